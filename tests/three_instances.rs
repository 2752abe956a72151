//! Three `seatgate serve` processes (separate OS processes) on one PostgreSQL database, run
//! as an operator runs them (shard leases are PostgreSQL's default), the sandbox recommending
//! four shards and a customer guild on each:
//! - each shard has exactly one session, held by some process, within 30 s of start;
//! - 600 messages with edits and deletes while one process is SIGKILLed: every shard has a
//!   session again within 30 s, and every target ends with every surviving message exactly
//!   once, with its latest text, in posting order;
//! - a graceful stop (SIGTERM) of one process: its shards are taken by the others;
//! - PostgreSQL restarted while messages flow: every process recovers by itself, nothing is
//!   lost or duplicated;
//! - a crossing counted by one process holds jobs claimed by any process, with one pause and
//!   one resume notice; the kill switch and a server's config changed through one process
//!   take effect on every process within 1 s.
//!
//! Ignored by default: PostgreSQL only, and the restart would break the other tests running
//! beside it. `.ci/run` runs them on their own:
//! `SEATGATE_TEST_DATABASE=postgres cargo test --test three_instances -- --ignored --test-threads 1`.

mod mirror_support;

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use seatgate::{
    domain::shards::shard_of,
    sandbox::SandboxHandle,
    store::{
        shard_leases::ShardLeases,
        testing::{wants_postgres, TestDatabase},
    },
};
use serde_json::json;

use mirror_support::*;

const OPERATOR: &str = "three-instances-operator";
const SHARDS: u64 = 4;
const NAMES: [&str; 3] = ["p0", "p1", "p2"];

struct Instance {
    name: &'static str,
    child: Child,
    admin: Admin,
}

fn spawn_with(
    name: &'static str,
    db_url: &str,
    sandbox: &SandboxHandle,
    extra: &[(&str, &str)],
) -> Instance {
    let port = free_port();
    let log = std::env::var("SEATGATE_TEST_INSTANCES_LOG")
        .ok()
        .and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        })
        .map(Stdio::from)
        .unwrap_or_else(Stdio::null);
    let child = Command::new(env!("CARGO_BIN_EXE_seatgate"))
        .arg("serve")
        .env_clear()
        .env("SEATGATE_DATABASE_URL", db_url)
        .env("SEATGATE_DISCORD_TOKEN", sandbox.bot_token())
        .env("SEATGATE_DISCORD_API_URL", sandbox.api_url())
        .env("SEATGATE_OPERATOR_TOKEN", OPERATOR)
        .env("SEATGATE_BIND", format!("127.0.0.1:{port}"))
        .env("SEATGATE_WORKER_ID", name)
        // Shard leases are not set: they are the default on PostgreSQL.
        // A killed process's queue leases expire after this; the default minute would
        // dominate the test.
        .env("SEATGATE_QUEUE_LEASE_SECS", "3")
        // The sandbox's limits are off and the test posts hundreds of messages a second.
        .env("SEATGATE_DISCORD_GLOBAL_RATE", "100000")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env(
            "RUST_LOG",
            std::env::var("SEATGATE_TEST_INSTANCES_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("seatgate serve starts");
    Instance {
        name,
        child,
        admin: Admin::new(format!("http://127.0.0.1:{port}"), OPERATOR.into()),
    }
}

impl Instance {
    fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    fn sigterm(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Held shards and their holders (an unreadable table, as while PostgreSQL restarts, is
/// none).
async fn holders(leases: &ShardLeases) -> BTreeMap<u32, String> {
    leases
        .list()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.held())
        .map(|l| (l.shard_id, l.holder.unwrap_or_default()))
        .collect()
}

/// Until every shard is held by one of `alive` and the sandbox sees exactly one session per
/// shard; how long that took. Panics after `limit`.
async fn every_shard_runs_once(
    sandbox: &SandboxHandle,
    leases: &ShardLeases,
    alive: &[&str],
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let want: BTreeMap<(u64, u64), usize> = (0..SHARDS).map(|id| ((id, SHARDS), 1)).collect();
    loop {
        let held = holders(leases).await;
        let sessions = sessions_per_shard(sandbox).await;
        if held.len() == SHARDS as usize
            && held.values().all(|h| alive.contains(&h.as_str()))
            && sessions == want
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "after {limit:?}: leases {held:?}, sessions {sessions:?}, alive {alive:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_three_with(
    t: &TestDatabase,
    sandbox: &SandboxHandle,
    extra: &[(&str, &str)],
) -> Vec<Instance> {
    let instances: Vec<Instance> = NAMES
        .iter()
        .map(|n| spawn_with(n, &t.url, sandbox, extra))
        .collect();
    for i in &instances {
        i.admin.wait_up(Duration::from_secs(60)).await;
    }
    instances
}

/// Three processes on a fresh database and a sandbox recommending four shards.
struct Cluster {
    _t: TestDatabase,
    sandbox: SandboxHandle,
    leases: ShardLeases,
    instances: Vec<Instance>,
}

/// A [`Cluster`] with every shard running once (and how long that took after start), its
/// processes started with `extra` settings; `None` off PostgreSQL.
async fn cluster(extra: &[(&str, &str)]) -> Option<(Cluster, Duration)> {
    if !wants_postgres() {
        eprintln!("PostgreSQL only (SEATGATE_TEST_DATABASE=postgres)");
        return None;
    }
    no_proxy();
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox_recommending(SHARDS, SHARDS).await;
    let leases = ShardLeases::new(t.db.clone());
    let instances = start_three_with(&t, &sandbox, extra).await;
    let took = every_shard_runs_once(&sandbox, &leases, &NAMES, Duration::from_secs(30)).await;
    let c = Cluster {
        _t: t,
        sandbox,
        leases,
        instances,
    };
    Some((c, took))
}

/// What the test did to one source message, in posting order.
struct Source {
    id: u64,
    content: String,
    deleted: bool,
}

/// Posts `count` messages, now and then editing or deleting an earlier one.
async fn post_some(
    sandbox: &SandboxHandle,
    sources: &mut Vec<Source>,
    count: usize,
    rng: &mut StdRng,
) {
    for _ in 0..count {
        let content = format!("signal {:04}", sources.len());
        let id = post(sandbox, &content);
        sources.push(Source {
            id,
            content,
            deleted: false,
        });
        if rng.random_bool(0.06) {
            let live: Vec<usize> = (0..sources.len())
                .filter(|i| !sources[*i].deleted)
                .collect();
            let pick = live[rng.random_range(0..live.len())];
            let s = &mut sources[pick];
            if rng.random_bool(0.5) {
                let base = s.content.split(" edited").next().unwrap_or_default();
                let content = format!("{base} edited {}", rng.random_range(0..10_000));
                sandbox
                    .edit_message(SOURCE_CHANNEL, s.id, &json!({"content": content}))
                    .expect("edited");
                s.content = content;
            } else {
                sandbox
                    .delete_message(SOURCE_CHANNEL, s.id)
                    .expect("deleted");
                s.deleted = true;
            }
        }
        // About 40 messages a second: one channel's messages are recorded one after another
        // (p50 15 ms with three processes on two cores); much faster and a message would
        // wait past its turn (5 s) and be recorded out of order.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every target ends with the surviving messages, each once, with its latest text; in
/// posting order when `ordered`.
async fn every_target_holds(sandbox: &SandboxHandle, sources: &[Source], ordered: bool) {
    let expected: Vec<String> = sources
        .iter()
        .filter(|s| !s.deleted)
        .map(|s| s.content.clone())
        .collect();
    let fits = |got: Vec<String>| {
        if ordered {
            got == expected
        } else {
            sorted(got) == sorted(expected.clone())
        }
    };
    for i in 0..SHARDS {
        let channel = target(i).1;
        if !until(Duration::from_secs(90), || fits(live(sandbox, channel))).await {
            let got = live(sandbox, channel);
            let missing: Vec<_> = expected
                .iter()
                .filter(|c| !got.contains(c))
                .take(10)
                .collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|c| !expected.contains(c))
                .take(10)
                .collect();
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for c in &got {
                *counts.entry(c.as_str()).or_default() += 1;
            }
            let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(10).collect();
            let first_out_of_order = got.iter().zip(expected.iter()).position(|(a, b)| a != b);
            let around = |v: &[String]| {
                let at = first_out_of_order.unwrap_or(0);
                v[at.saturating_sub(2)..(at + 4).min(v.len())].to_vec()
            };
            panic!(
                "target {i}: {} shown, {} expected; missing {missing:?}; unexpected {extra:?}; duplicated {dups:?}; first difference at {first_out_of_order:?}: shown {:?}, expected {:?}",
                got.len(),
                expected.len(),
                around(&got),
                around(&expected)
            );
        }
    }
}

#[actix_web::test]
#[ignore = "three serve processes on PostgreSQL; .ci/run runs this file alone with --ignored"]
async fn three_processes_share_four_shards_through_a_sigkill_and_a_graceful_stop() {
    let Some((c, took)) = cluster(&[]).await else {
        return;
    };
    let Cluster {
        _t,
        sandbox,
        leases,
        mut instances,
    } = c;
    println!("start: every shard one session after {took:?}");

    instances[0]
        .admin
        .configure(&["bot", "bot", "bot", "bot"])
        .await;
    // Configured through p0: every process's ingest and gate see the mappings.
    let held = holders(&leases).await;
    let source_owner = held[&(shard_of(SOURCE_GUILD, SHARDS) as u32)].clone();
    // The process killed is one that does not run the source guild's shard: its claimed
    // deliveries are taken over while ingest goes on (killing the source's owner loses its
    // session; what was posted meanwhile comes by catch-up, out of posting order).
    let victim = instances
        .iter()
        .position(|i| i.name != source_owner)
        .expect("two processes do not run the source's shard");
    println!(
        "shards {held:?}; source guild's shard with {source_owner}; SIGKILL for {}",
        instances[victim].name
    );

    // A first message through, so that every process's gate has mappings and webhooks warm.
    let mut rng = StdRng::seed_from_u64(16);
    let mut sources = Vec::new();
    post_some(&sandbox, &mut sources, 1, &mut rng).await;
    every_target_holds(&sandbox, &sources, true).await;

    post_some(&sandbox, &mut sources, 200, &mut rng).await;
    let killed_name = instances[victim].name;
    instances[victim].sigkill();
    let killed_at = Instant::now();
    post_some(&sandbox, &mut sources, 399, &mut rng).await;
    let alive: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|n| *n != killed_name)
        .collect();
    let back = every_shard_runs_once(&sandbox, &leases, &alive, Duration::from_secs(30)).await;
    println!(
        "SIGKILL of {killed_name}: every shard one session again {:?} after the kill",
        killed_at.elapsed().max(back)
    );
    every_target_holds(&sandbox, &sources, true).await;
    let deleted = sources.iter().filter(|s| s.deleted).count();
    let edited = sources
        .iter()
        .filter(|s| !s.deleted && s.content.contains("edited"))
        .count();
    assert!(deleted > 0 && edited > 0, "the run edited and deleted");
    println!(
        "{} posted ({edited} surviving edited, {deleted} deleted): every target holds each surviving message once, latest text, posting order",
        sources.len()
    );

    // A graceful stop hands the stopping process's shards to the last one.
    let stopping = instances
        .iter()
        .position(|i| i.name != killed_name)
        .expect("a live process");
    let stopping_name = instances[stopping].name;
    let last: Vec<&str> = alive
        .iter()
        .copied()
        .filter(|n| *n != stopping_name)
        .collect();
    let its: Vec<u32> = holders(&leases)
        .await
        .into_iter()
        .filter(|(_, h)| h == stopping_name)
        .map(|(s, _)| s)
        .collect();
    // The takeover above just IDENTIFYed; Discord allows the next one in this bucket 5 s
    // later (`max_concurrency` 1), whoever sends it.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    instances[stopping].sigterm();
    let stopped_at = Instant::now();
    let mut first_taken = None;
    loop {
        let held = holders(&leases).await;
        let taken = its
            .iter()
            .filter(|s| held.get(s).is_some_and(|h| last.contains(&h.as_str())))
            .count();
        if taken > 0 && first_taken.is_none() {
            first_taken = Some(stopped_at.elapsed());
        }
        if taken == its.len() {
            break;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(20),
            "{stopping_name}'s shards {its:?} not taken: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_taken = stopped_at.elapsed();
    let first_taken = first_taken.unwrap_or(all_taken);
    println!(
        "graceful stop of {stopping_name} ({} shards): first taken after {first_taken:?}, all after {all_taken:?}",
        its.len()
    );
    assert!(
        first_taken <= Duration::from_secs(5),
        "the first shard of a graceful stop taken after {first_taken:?}"
    );
    every_shard_runs_once(&sandbox, &leases, &last, Duration::from_secs(15)).await;
    post_some(&sandbox, &mut sources, 20, &mut rng).await;
    every_target_holds(&sandbox, &sources, true).await;
    sandbox.shutdown().await;
}

/// `pg_ctlcluster ... main restart` of the machine's only cluster.
fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a PostgreSQL cluster");
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "PostgreSQL restarted");
}

#[actix_web::test]
#[ignore = "restarts the PostgreSQL cluster the other tests share; .ci/run runs this file alone with --ignored"]
async fn every_process_recovers_by_itself_from_a_postgres_restart() {
    let Some((c, _)) = cluster(&[]).await else {
        return;
    };
    let Cluster {
        _t,
        sandbox,
        leases,
        instances,
    } = c;
    instances[1]
        .admin
        .configure(&["bot", "bot", "webhook", "bot"])
        .await;
    let mut rng = StdRng::seed_from_u64(17);
    let mut sources = Vec::new();
    post_some(&sandbox, &mut sources, 1, &mut rng).await;
    every_target_holds(&sandbox, &sources, true).await;

    post_some(&sandbox, &mut sources, 100, &mut rng).await;
    // The restart blocks this thread for its seconds: messages keep coming from a task.
    let restarted = Instant::now();
    let restart = std::thread::spawn(restart_postgres);
    post_some(&sandbox, &mut sources, 200, &mut rng).await;
    restart.join().expect("restart thread");
    println!("PostgreSQL restarted in {:?}", restarted.elapsed());
    post_some(&sandbox, &mut sources, 100, &mut rng).await;
    let back = every_shard_runs_once(&sandbox, &leases, &NAMES, Duration::from_secs(60)).await;
    println!("every shard one session after the restart: {back:?} after the last posts");
    // Order is asked of a SIGKILL above; here nothing lost or duplicated, latest texts.
    every_target_holds(&sandbox, &sources, false).await;
    // The listeners re-subscribed: a config change through one process reaches the others'
    // change feeds (the kill switch, set through p0, shows in p2's enforcement).
    instances[0]
        .admin
        .call(
            reqwest::Method::PUT,
            "/api/v1/enforcement",
            Some(json!({"kill_switch": true})),
        )
        .await;
    let shown = Instant::now();
    loop {
        let v = instances[2]
            .admin
            .call(reqwest::Method::GET, "/api/v1/enforcement", None)
            .await;
        if v["kill_switch"] == true {
            break;
        }
        assert!(
            shown.elapsed() < Duration::from_secs(5),
            "p2 after the restart: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "kill switch through p0 -> p2 after the restart: {:?}",
        shown.elapsed()
    );
    println!(
        "{} posted across the restart: every target holds each surviving message once",
        sources.len()
    );
    drop(instances);
    sandbox.shutdown().await;
}

/// Until every process's `GET /api/v1/enforcement` (its snapshot cache) shows `on`; how long.
async fn kill_switch_everywhere(instances: &[Instance], on: bool) -> Duration {
    let start = Instant::now();
    loop {
        let mut all = true;
        for i in instances {
            let v = i
                .admin
                .call(reqwest::Method::GET, "/api/v1/enforcement", None)
                .await;
            all &= v["kill_switch"] == on;
        }
        if all {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the kill switch never reached every process"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
#[ignore = "three serve processes on PostgreSQL; .ci/run runs this file alone with --ignored"]
async fn a_crossing_counted_by_one_process_holds_every_process_and_tells_once() {
    // Counts re-stamped every second: a process vouching again for a crossing it does not own
    // would post a second notice within the test.
    let Some((c, _)) = cluster(&[
        ("SEATGATE_RECHECK_SECS", "1"),
        ("SEATGATE_RECHECK_OVER_LIMIT_SECS", "1"),
        ("SEATGATE_FRESH_WINDOW_SECS", "3"),
        ("SEATGATE_STALE_WINDOW_SECS", "10"),
    ])
    .await
    else {
        return;
    };
    let Cluster {
        _t,
        sandbox,
        leases,
        instances,
    } = c;
    let (guild, channel) = target(0);
    let owner = holders(&leases).await[&(shard_of(guild, SHARDS) as u32)].clone();
    // Configured through a process that does not own the guild.
    let other = instances
        .iter()
        .find(|i| i.name != owner)
        .expect("a process that does not own the guild");
    other.admin.configure(&["bot", "bot", "bot", "bot"]).await;
    let server = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}");
    other
        .admin
        .call(
            reqwest::Method::PUT,
            &server,
            Some(server_config(json!({
                "seat_limit": 1, "enforcement_mode": "enforce",
                "notify_channel_id": channel.to_string()
            }))),
        )
        .await;

    // The kill switch set through one process, on every process.
    instances[0]
        .admin
        .call(
            reqwest::Method::PUT,
            "/api/v1/enforcement",
            Some(json!({"kill_switch": true})),
        )
        .await;
    let on = kill_switch_everywhere(&instances, true).await;
    instances[2]
        .admin
        .call(
            reqwest::Method::PUT,
            "/api/v1/enforcement",
            Some(json!({"kill_switch": false})),
        )
        .await;
    let off = kill_switch_everywhere(&instances, false).await;
    println!("kill switch through one process -> all three: on {on:?}, off {off:?}");
    assert!(on < Duration::from_secs(1) && off < Duration::from_secs(1));

    let snapshot_is = |want: bool| {
        let admin = &instances[1].admin;
        let path = format!("{server}/snapshot");
        async move {
            let start = Instant::now();
            loop {
                let (_, v) = admin
                    .try_call(reqwest::Method::GET, &path, None, None)
                    .await;
                if v["is_over_limit"] == want && v["seats_used"].as_i64().is_some() {
                    return start.elapsed();
                }
                assert!(start.elapsed() < Duration::from_secs(20), "{v}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // The stored snapshot is the owner's count, written by the owner alone.
    snapshot_is(false).await;
    post_in_order(&sandbox, "before").await;

    sandbox
        .add_member(
            guild,
            &json!({"user": {"id": "720000000000000001", "username": "joiner"}, "roles": []}),
        )
        .expect("member added");
    let counted = snapshot_is(true).await;
    println!("join -> the owner's count over the limit, read through another process: {counted:?}");
    // Signals while over: whichever process claims them holds them.
    let held = post_spaced(&sandbox, "while over", 6, Duration::from_millis(300)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = live(&sandbox, channel);
    assert!(
        !shown.iter().any(|c| c.starts_with("while over")),
        "delivered into a server over its limit: {shown:?}"
    );
    assert!(
        shown_within(&sandbox, target(1).1, &held, Duration::from_secs(10)).await,
        "the other servers' copies go on"
    );

    sandbox
        .remove_member(guild, 720_000_000_000_000_001)
        .expect("member removed");
    assert!(
        shown_within(&sandbox, channel, &held, Duration::from_secs(30)).await,
        "the held signals never arrived after the resume: {:?}",
        live(&sandbox, channel)
    );
    // Rechecks every second on the owner: time for a second notice, were one to be posted.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let shown = live(&sandbox, channel);
    let paused = shown.iter().filter(|c| c.contains("is paused")).count();
    let resumed = shown.iter().filter(|c| c.contains("has resumed")).count();
    assert_eq!((paused, resumed), (1, 1), "notices: {shown:?}");
    println!("one crossing: {paused} pause notice and {resumed} resume notice, held signals delivered after the resume");

    // A config change through one process takes effect on every process within 1 s: the
    // server blocked by its override through the last process; from a second later, whichever
    // process claims a signal for it holds it, and the other servers' copies go on.
    let changed = Instant::now();
    instances[2]
        .admin
        .call(
            reqwest::Method::PUT,
            &server,
            Some(server_config(json!({
                "seat_limit": 1, "enforcement_mode": "enforce", "override": "block",
                "notify_channel_id": channel.to_string()
            }))),
        )
        .await;
    tokio::time::sleep_until((changed + Duration::from_secs(1)).into()).await;
    let blocked = post_spaced(&sandbox, "while blocked", 9, Duration::from_millis(200)).await;
    assert!(
        shown_within(&sandbox, target(1).1, &blocked, Duration::from_secs(10)).await,
        "the other servers' copies go on"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let shown = live(&sandbox, channel);
    assert!(
        !shown.iter().any(|c| c.starts_with("while blocked")),
        "delivered into a server blocked through another process a second before: {shown:?}"
    );
    println!("config change through one process: held on every process from 1 s after it");
    drop(instances);
    sandbox.shutdown().await;
}

/// Posts `n` signals, `prefix 0` to `prefix n-1`, `gap` apart; their texts.
async fn post_spaced(
    sandbox: &SandboxHandle,
    prefix: &str,
    n: usize,
    gap: Duration,
) -> Vec<String> {
    let mut posted = Vec::with_capacity(n);
    for k in 0..n {
        let content = format!("{prefix} {k}");
        post(sandbox, &content);
        posted.push(content);
        tokio::time::sleep(gap).await;
    }
    posted
}

/// Whether `channel` shows every one of `texts` within `limit`.
async fn shown_within(
    sandbox: &SandboxHandle,
    channel: u64,
    texts: &[String],
    limit: Duration,
) -> bool {
    until(limit, || {
        let shown = live(sandbox, channel);
        texts.iter().all(|t| shown.contains(t))
    })
    .await
}

/// Posts one signal and waits until every target shows it.
async fn post_in_order(sandbox: &SandboxHandle, content: &str) {
    post(sandbox, content);
    assert!(
        until(Duration::from_secs(20), || (0..SHARDS).all(|i| live(
            sandbox,
            target(i).1
        )
        .iter()
        .any(|c| c == content)))
        .await,
        "{content} never reached every target"
    );
}
