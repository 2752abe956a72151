//! Gateway sessions: sequence numbers, per-session replay buffers for RESUME, intent filtering
//! and fan-out of dispatches to connected sockets.
//!
//! Lock order: the sandbox state lock, then the hub lock. Dispatches are published while the
//! state lock is held, so every session sees state changes in the order they happened.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::sandbox::model::guild_create_json;
use crate::sandbox::state::State;

pub const INTENT_GUILDS: u64 = 1 << 0;
pub const INTENT_GUILD_MEMBERS: u64 = 1 << 1;
pub const INTENT_GUILD_WEBHOOKS: u64 = 1 << 5;
pub const INTENT_GUILD_MESSAGES: u64 = 1 << 9;
pub const INTENT_MESSAGE_CONTENT: u64 = 1 << 15;

/// Events kept per session for RESUME; older ones are dropped and a RESUME from before them
/// gets INVALID_SESSION, as on Discord when a client was away too long.
const REPLAY_CAP: usize = 20_000;

/// How long a disconnected session stays resumable before it is forgotten (and stops
/// buffering events). Discord keeps sessions resumable for a few minutes.
pub const RESUME_WINDOW: Duration = Duration::from_secs(5 * 60);

/// What a connection task is told to do.
#[derive(Debug)]
pub enum Outgoing {
    Text(String),
    /// Close the socket with this code and reason.
    Close(u16, String),
    /// The session was invalidated: send op 9 `false` and wait for a new IDENTIFY.
    Invalidated,
}

pub type ConnTx = UnboundedSender<Outgoing>;

#[derive(Debug, Clone)]
pub enum Body {
    /// `d` for sessions with every needed intent; `stripped` (if any) for sessions without
    /// MESSAGE_CONTENT.
    Static { d: Value, stripped: Option<Value> },
    /// GUILD_CREATE rendered per session (member list depends on intents and large_threshold).
    GuildCreate,
}

#[derive(Debug, Clone)]
pub struct Dispatch {
    pub t: &'static str,
    pub guild_id: u64,
    /// Intents a session needs to receive it at all.
    pub intents: u64,
    pub body: Body,
}

impl Dispatch {
    pub fn new(t: &'static str, guild_id: u64, intents: u64, d: Value) -> Self {
        Self {
            t,
            guild_id,
            intents,
            body: Body::Static { d, stripped: None },
        }
    }

    pub fn with_stripped(mut self, stripped: Value) -> Self {
        if let Body::Static { stripped: s, .. } = &mut self.body {
            *s = Some(stripped);
        }
        self
    }

    pub fn guild_create(guild_id: u64) -> Self {
        Self {
            t: "GUILD_CREATE",
            guild_id,
            intents: INTENT_GUILDS,
            body: Body::GuildCreate,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SessionParams {
    pub intents: u64,
    pub large_threshold: u64,
    pub shard_id: u64,
    pub shard_count: u64,
}

impl SessionParams {
    pub fn owns_guild(&self, guild_id: u64) -> bool {
        crate::domain::shards::shard_of(guild_id, self.shard_count) == self.shard_id
    }
}

struct Session {
    params: SessionParams,
    seq: u64,
    /// Highest sequence number dropped from `buffer` (acknowledged or over the cap).
    trimmed_upto: u64,
    buffer: VecDeque<(u64, String)>,
    conn: Option<(u64, ConnTx)>,
    detached_at: Option<Instant>,
}

impl Session {
    fn push(&mut self, t: &str, d: &str) {
        self.seq += 1;
        let frame = format!(r#"{{"op":0,"t":"{t}","s":{},"d":{d}}}"#, self.seq);
        if let Some((_, tx)) = &self.conn {
            let _ = tx.send(Outgoing::Text(frame.clone()));
        }
        self.buffer.push_back((self.seq, frame));
        while self.buffer.len() > REPLAY_CAP {
            if let Some((s, _)) = self.buffer.pop_front() {
                self.trimmed_upto = s;
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    next_conn: u64,
}

#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
}

/// A session with a connection, for the control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub session_id: String,
    pub shard_id: u64,
    pub shard_count: u64,
}

/// Why a RESUME was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ResumeRefused {
    UnknownSession,
    TooOld,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions with a live connection, by session id.
    pub fn live_sessions(&self) -> Vec<LiveSession> {
        let inner = self.lock();
        let mut out: Vec<LiveSession> = inner
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_some())
            .map(|(id, s)| LiveSession {
                session_id: id.clone(),
                shard_id: s.params.shard_id,
                shard_count: s.params.shard_count,
            })
            .collect();
        out.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        out
    }

    pub fn next_conn_id(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_conn += 1;
        inner.next_conn
    }

    /// Fans dispatches out to every session that should see them. Call with the state lock held.
    pub fn publish(&self, state: &State, dispatches: &[Dispatch]) {
        if dispatches.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner
            .sessions
            .retain(|_, s| s.detached_at.is_none_or(|t| t.elapsed() < RESUME_WINDOW));
        for d in dispatches {
            // Serialised lazily, once per variant.
            let mut full: Option<String> = None;
            let mut stripped: Option<String> = None;
            let mut gc_full: Option<String> = None;
            let mut gc_slim: Option<String> = None;
            // Nothing of a guild in an outage reaches the gateway but the news of it.
            if state.outages.contains(&d.guild_id) && d.t != "GUILD_DELETE" {
                continue;
            }
            for session in inner.sessions.values_mut() {
                let p = session.params;
                if !p.owns_guild(d.guild_id) || p.intents & d.intents != d.intents {
                    continue;
                }
                let text: &str = match &d.body {
                    Body::Static {
                        d: full_d,
                        stripped: s,
                    } => match s {
                        Some(s) if p.intents & INTENT_MESSAGE_CONTENT == 0 => {
                            stripped.get_or_insert_with(|| s.to_string())
                        }
                        _ => full.get_or_insert_with(|| full_d.to_string()),
                    },
                    Body::GuildCreate => {
                        let Some(g) = state.guilds.get(&d.guild_id) else {
                            continue;
                        };
                        if include_all_members(g.members.len() as u64, &p) {
                            gc_full
                                .get_or_insert_with(|| render_guild_create(state, d.guild_id, &p))
                        } else {
                            gc_slim
                                .get_or_insert_with(|| render_guild_create(state, d.guild_id, &p))
                        }
                    }
                };
                session.push(d.t, text);
            }
        }
    }

    /// Creates a session for an identified connection and queues READY and one GUILD_CREATE per
    /// guild of its shard. Call with the state lock held.
    pub fn identify(
        &self,
        state: &State,
        session_id: String,
        params: SessionParams,
        conn_id: u64,
        tx: ConnTx,
        ready: &Value,
    ) {
        let mut session = Session {
            params,
            seq: 0,
            trimmed_upto: 0,
            buffer: VecDeque::new(),
            conn: Some((conn_id, tx)),
            detached_at: None,
        };
        session.push("READY", &ready.to_string());
        for gid in state.guilds.keys() {
            if params.owns_guild(*gid) && !state.outages.contains(gid) {
                session.push("GUILD_CREATE", &render_guild_create(state, *gid, &params));
            }
        }
        self.lock().sessions.insert(session_id, session);
    }

    /// Re-attaches a connection to a session, replays the events after `seq`, then RESUMED.
    pub fn resume(
        &self,
        session_id: &str,
        seq: u64,
        conn_id: u64,
        tx: ConnTx,
    ) -> Result<(), ResumeRefused> {
        let mut inner = self.lock();
        let session = inner
            .sessions
            .get_mut(session_id)
            .ok_or(ResumeRefused::UnknownSession)?;
        if session
            .detached_at
            .is_some_and(|t| t.elapsed() >= RESUME_WINDOW)
        {
            return Err(ResumeRefused::UnknownSession);
        }
        if seq < session.trimmed_upto || seq > session.seq {
            return Err(ResumeRefused::TooOld);
        }
        if let Some((_, old)) = session.conn.take() {
            let _ = old.send(Outgoing::Close(4000, "session resumed elsewhere".into()));
        }
        for (s, frame) in &session.buffer {
            if *s > seq {
                let _ = tx.send(Outgoing::Text(frame.clone()));
            }
        }
        session.conn = Some((conn_id, tx));
        session.detached_at = None;
        session.push("RESUMED", "{}");
        Ok(())
    }

    /// Sends one dispatch to one session (GUILD_MEMBERS_CHUNK answers).
    pub fn send_to(&self, session_id: &str, t: &'static str, d: &str) -> bool {
        let mut inner = self.lock();
        match inner.sessions.get_mut(session_id) {
            Some(s) => {
                s.push(t, d);
                true
            }
            None => false,
        }
    }

    /// A heartbeat says the client has everything up to `seq`: drop it from the replay buffer.
    pub fn acknowledge(&self, session_id: &str, seq: u64) {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.get_mut(session_id) {
            while s.buffer.front().is_some_and(|(x, _)| *x <= seq) {
                if let Some((x, _)) = s.buffer.pop_front() {
                    s.trimmed_upto = x;
                }
            }
        }
    }

    /// Ends a session (the client closed with 1000/1001).
    pub fn forget(&self, session_id: &str) {
        self.lock().sessions.remove(session_id);
    }

    /// The connection went away: keep its session for RESUME.
    pub fn detach(&self, conn_id: u64) {
        let mut inner = self.lock();
        for s in inner.sessions.values_mut() {
            if s.conn.as_ref().is_some_and(|(c, _)| *c == conn_id) {
                s.conn = None;
                s.detached_at = Some(Instant::now());
            }
        }
    }

    pub fn session_params(&self, session_id: &str) -> Option<SessionParams> {
        self.lock().sessions.get(session_id).map(|s| s.params)
    }

    /// Closes every connected socket (code 4000, resumable); sessions stay for RESUME.
    pub fn drop_connections(&self) -> usize {
        let mut inner = self.lock();
        let mut n = 0;
        for s in inner.sessions.values_mut() {
            if let Some((_, tx)) = s.conn.take() {
                let _ = tx.send(Outgoing::Close(
                    4000,
                    "sandbox dropped the connection".into(),
                ));
                n += 1;
            }
        }
        n
    }

    /// Forgets every session; connected clients get op 9 `false` and must IDENTIFY again.
    pub fn invalidate_sessions(&self) -> usize {
        let mut inner = self.lock();
        let n = inner.sessions.len();
        for (_, s) in inner.sessions.drain() {
            if let Some((_, tx)) = s.conn {
                let _ = tx.send(Outgoing::Invalidated);
            }
        }
        n
    }

    pub fn connected_count(&self) -> usize {
        self.lock()
            .sessions
            .values()
            .filter(|s| s.conn.is_some())
            .count()
    }

    /// Closes every socket for shutdown.
    pub fn close_all(&self) {
        let mut inner = self.lock();
        for (_, s) in inner.sessions.drain() {
            if let Some((_, tx)) = s.conn {
                let _ = tx.send(Outgoing::Close(1001, "sandbox shutting down".into()));
            }
        }
    }
}

/// Whether GUILD_CREATE carries the whole member list: only with GUILD_MEMBERS, and only for
/// guilds at or under the session's `large_threshold`.
pub fn include_all_members(member_count: u64, p: &SessionParams) -> bool {
    p.intents & INTENT_GUILD_MEMBERS != 0 && member_count <= p.large_threshold
}

pub fn render_guild_create(state: &State, guild_id: u64, p: &SessionParams) -> String {
    let Some(g) = state.guilds.get(&guild_id) else {
        return "null".into();
    };
    let all = include_all_members(g.members.len() as u64, p);
    let members: Vec<Value> = g
        .members
        .values()
        .filter(|m| all || m.user_id == state.bot_id)
        .filter_map(|m| state.member_value(m))
        .collect();
    let large = g.members.len() as u64 > p.large_threshold;
    guild_create_json(g, members, large).to_string()
}
