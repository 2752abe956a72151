//! The demo story end to end: the sandbox, the whole service, the admin API, on the backend
//! `SEATGATE_TEST_DATABASE` selects.

use seatgate::{demo::run_story, store::testing::TestDatabase};

#[actix_web::test]
async fn the_demo_story_plays_through() {
    let t = TestDatabase::empty().await.unwrap();
    let timeline = match run_story(&t.url).await {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(timeline.delivery_ms.len(), 3);
    assert!(
        timeline.join_to_pause_ms < 2_000.0,
        "{}",
        timeline.join_to_pause_ms
    );
    assert!(
        timeline.leave_to_resume_ms < 5_000.0,
        "{}",
        timeline.leave_to_resume_ms
    );
}

#[test]
fn seatgate_demo_exits_0() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seatgate"))
        .arg("demo")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("SEATGATE_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("demo ok"), "{stdout}");
    assert!(stdout.contains("seat_limit_exceeded"), "{stdout}");
}
