//! A 100,000-member guild served by chunking: GUILD_CREATE comes without the member list (the
//! guild is large) and opcode 8 delivers every member in GUILD_MEMBERS_CHUNKs of 1000 to a
//! real serenity client. Prints how long the client takes to receive and cache them all:
//! `cargo test --test sandbox_large -- --nocapture`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::sandbox::bot::Bot;
use common::sandbox::*;
use serenity::all::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_member_guild_is_served_by_chunking() {
    const MEMBERS: u64 = 100_000;
    let sb = start().await;
    sb.bulk_add_members(GUILD, 600_000_000_000_000_000, MEMBERS)
        .unwrap();
    let total = MEMBERS as usize + 4;
    let expected_chunks = total.div_ceil(1000);

    let mut bot = Bot::start(sb.api_url(), sb.bot_token()).await;
    wait_for(&mut bot.events, "ready", |_| true).await;
    let gc = wait_for(&mut bot.events, "guild_create", |g| id_eq(&g["id"], GUILD)).await;
    assert_eq!(
        gc["members"], 1,
        "a large guild comes without its member list"
    );

    let started = Instant::now();
    bot.context().shard.chunk_guild(
        GuildId::new(GUILD),
        None,
        false,
        ChunkGuildFilter::None,
        Some("all".into()),
    );
    let mut seen = BTreeSet::new();
    let mut members = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while seen.len() < expected_chunks {
        let (name, c) = tokio::time::timeout_at(deadline, bot.events.recv())
            .await
            .expect("all chunks within 180 s")
            .unwrap();
        if name != "guild_members_chunk" {
            continue;
        }
        assert_eq!(c["chunk_count"].as_u64(), Some(expected_chunks as u64));
        assert!(
            seen.insert(c["chunk_index"].as_u64().unwrap()),
            "chunk repeated"
        );
        members += c["ids"].as_array().unwrap().len();
    }
    let elapsed = started.elapsed();
    assert_eq!(members, total);
    assert_eq!(
        bot.cache.guild(GuildId::new(GUILD)).unwrap().members.len(),
        total
    );
    println!(
        "[sandbox] {total} members in {expected_chunks} GUILD_MEMBERS_CHUNKs received and cached by serenity in {:.2} s ({:.0} members/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    bot.stop().await;
    sb.shutdown().await;
}
