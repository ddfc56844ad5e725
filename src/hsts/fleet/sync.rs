//! The sync task: one per instance. It keeps two connections to Redis — one for writes and
//! scans, one blocked in `XREAD` on the change stream — and moves changes both ways:
//!
//! - out: the write queue, one `EVALSHA` of [`super::script`] per change, pipelined;
//! - in: every message of the change stream, applied to the local copy in stream order
//!   (this instance's own messages too, so that every copy ends where Redis is).
//!
//! On every (re)connection it first replays the queue, then catches up: from the last
//! stream ID it applied when that message is still in the stream, else by a full rescan of
//! the prefix (at start, after Redis lost its data, or after missing more than the stream
//! keeps). A full rescan also offers Redis the local entries it does not have ("seeds"), so
//! a Redis restarted empty gets the fleet's state back. While Redis is unreachable the local
//! copy keeps serving; the task retries with backoff and logs one line when the connection
//! is lost and one when it is back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Client, RedisError, Script, Value};
use tokio::sync::oneshot;

use super::queue::{Write, WriteQueue};
use super::script::{max_age_secs, OpKind, RemoteState, STREAM_MAXLEN, TOMBSTONE_MS};
use super::shared::enqueue;
use crate::hsts::header::StsPolicy;
use crate::hsts::learn::StsUpdate;
use crate::hsts::store::{now_unix, HstsStore, Source};
use crate::metrics::BackendMetrics;

/// Writes sent in one pipeline.
const BATCH: usize = 256;
/// Stream messages read per `XREAD`.
const READ_COUNT: usize = 1000;
/// How long one `XREAD` blocks; the connection's response timeout must exceed it.
const BLOCK_MS: u64 = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the first connection attempt found, for start-up to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstSync {
    /// Connected and loaded this many entries from Redis.
    Loaded(usize),
    /// Redis could not be reached; serving from the local copy.
    Unreachable,
}

/// The keys one fleet shares.
#[derive(Clone, Debug)]
pub struct Keys {
    pub prefix: String,
    pub stream: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        // A domain never holds ':', so this key cannot collide with an entry's.
        Keys {
            prefix: prefix.to_owned(),
            stream: format!("{prefix}:stream"),
        }
    }

    pub fn entry(&self, domain: &str) -> String {
        format!("{}{domain}", self.prefix)
    }

    /// The domain of an entry key; `None` for the stream and anything else under the prefix.
    pub fn domain_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())
            .filter(|d| !d.is_empty() && !d.contains(':'))
    }
}

/// Everything the task needs; it owns the only stream cursor.
pub struct Engine {
    pub client: Client,
    pub keys: Keys,
    /// This instance's name in stream messages, to tell remote changes from its own.
    pub node: String,
    /// The local copy, written underneath the write-through wrapper.
    pub local: Arc<dyn HstsStore>,
    pub queue: Arc<WriteQueue>,
    pub metrics: BackendMetrics,
    pub warned_drop: Arc<AtomicBool>,
    /// The URL with its password masked, for log lines.
    pub shown_url: String,
    pub script: Script,
    /// The last stream ID applied; `None` until the first full sync.
    pub last_id: Option<String>,
    /// Redis's clock minus ours, in ms, measured at the last connection.
    pub clock_offset_ms: i64,
}

/// Two live connections.
struct Conns {
    write: MultiplexedConnection,
    read: MultiplexedConnection,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Engine {
    /// Runs until aborted. `first` hears the outcome of the first attempt.
    pub async fn run(mut self, first: oneshot::Sender<FirstSync>) {
        let mut first = Some(first);
        let mut backoff = BACKOFF_MIN;
        let mut down_since_logged = false;
        loop {
            match self.connect_and_sync().await {
                Ok((conns, loaded)) => {
                    self.metrics.up.set(1);
                    backoff = BACKOFF_MIN;
                    self.warned_drop.store(false, Ordering::Relaxed);
                    if let Some(first) = first.take() {
                        let _ = first.send(FirstSync::Loaded(loaded.unwrap_or(0)));
                    } else if down_since_logged {
                        tracing::warn!(
                            "shared HSTS store {} is back: replayed the queued writes and resynced",
                            self.shown_url
                        );
                    }
                    let err = self.serve(conns).await;
                    self.metrics.up.set(0);
                    tracing::warn!(
                        "shared HSTS store {} lost ({err}); enforcing from the local copy and queueing writes until it is back",
                        self.shown_url
                    );
                    down_since_logged = true;
                }
                Err(err) => {
                    self.metrics.up.set(0);
                    if let Some(first) = first.take() {
                        tracing::warn!(
                            "shared HSTS store {} unreachable at start ({err}); enforcing from the local copy and retrying",
                            self.shown_url
                        );
                        down_since_logged = true;
                        let _ = first.send(FirstSync::Unreachable);
                    } else {
                        tracing::debug!("shared HSTS store {}: {err}", self.shown_url);
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn connect(
        &self,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Connects, replays the queue and catches up. Returns the entries loaded when it had to
    /// do a full rescan.
    async fn connect_and_sync(&mut self) -> Result<(Conns, Option<usize>), RedisError> {
        let mut write = self.connect(RESPONSE_TIMEOUT).await?;
        let read = self
            .connect(RESPONSE_TIMEOUT + Duration::from_millis(BLOCK_MS))
            .await?;
        self.script.prepare_invoke().load_async(&mut write).await?;
        let before = unix_ms();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut write).await?;
        let after = unix_ms();
        self.clock_offset_ms = secs * 1000 + micros / 1000 - (before + after) / 2;

        // Replay first, so that a rescan cannot briefly put back what changed here meanwhile.
        while !self.queue.is_empty() {
            self.write_batch(&mut write).await?;
        }
        let caught_up = match &self.last_id {
            Some(id) => {
                let still_there: Value = redis::cmd("XRANGE")
                    .arg(&self.keys.stream)
                    .arg(id)
                    .arg(id)
                    .query_async(&mut write)
                    .await?;
                matches!(&still_there, Value::Array(items) if !items.is_empty())
            }
            None => false,
        };
        let loaded = if caught_up {
            None
        } else {
            Some(self.full_sync(&mut write).await?)
        };
        Ok((Conns { write, read }, loaded))
    }

    /// Loads every entry under the prefix into the local copy, then offers Redis the local
    /// entries it lacks. Returns how many entries Redis held.
    async fn full_sync(&mut self, conn: &mut MultiplexedConnection) -> Result<usize, RedisError> {
        // Messages written during the scan are applied after it, from this ID on.
        let newest: StreamReadReplyRange = redis::cmd("XREVRANGE")
            .arg(&self.keys.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await
            .map(StreamReadReplyRange)?;
        let start_id = newest.first_id().unwrap_or_else(|| "0-0".to_owned());

        let pattern = format!("{}*", self.keys.prefix);
        let mut cursor: u64 = 0;
        let mut seen = HashSet::new();
        let mut loaded = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await?;
            let domains: Vec<&str> = keys.iter().filter_map(|k| self.keys.domain_of(k)).collect();
            if !domains.is_empty() {
                let mut pipe = redis::pipe();
                for domain in &domains {
                    let key = self.keys.entry(domain);
                    pipe.cmd("HMGET").arg(&key).arg("s").arg("i");
                    pipe.cmd("PTTL").arg(&key);
                }
                let replies: Vec<Value> = pipe.query_async(conn).await?;
                for (domain, pair) in domains.iter().zip(replies.chunks(2)) {
                    let [fields, pttl] = pair else { continue };
                    let (source, incl): (Option<String>, Option<String>) =
                        redis::from_redis_value_ref(fields).unwrap_or((None, None));
                    let pttl: i64 = redis::from_redis_value_ref(pttl).unwrap_or(-2);
                    let Some(state) = RemoteState::parse(
                        source.as_deref().unwrap_or(""),
                        incl.as_deref().unwrap_or("0"),
                        pttl,
                    ) else {
                        continue;
                    };
                    if matches!(state, RemoteState::Entry { .. }) {
                        loaded += 1;
                    }
                    seen.insert(domain.to_string());
                    apply_local(self.local.as_ref(), domain, state);
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        // What this copy has and Redis lacks goes back (Redis restarted empty, or this
        // instance learned while alone). The script writes a seed only where no key is.
        let now = now_unix();
        for entry in self.local.dynamic_entries() {
            if seen.contains(&entry.domain) {
                continue;
            }
            let Some(expires_at) = entry.expires_at else {
                continue;
            };
            let kind = match entry.source {
                Source::Manual => OpKind::SeedManual,
                Source::Learned => OpKind::SeedLearned,
                Source::Preload => continue,
            };
            let write = Write {
                kind,
                domain: entry.domain,
                include_subdomains: entry.include_subdomains,
                max_age: expires_at.saturating_sub(now),
                observed: Instant::now(),
            };
            enqueue(&self.queue, &self.metrics, &self.warned_drop, write);
        }
        self.metrics.loaded_entries.set(loaded as i64);
        self.last_id = Some(start_id);
        tracing::debug!(
            "shared HSTS store {}: {loaded} entries loaded",
            self.shown_url
        );
        Ok(loaded)
    }

    /// Writes and reads until a connection fails.
    async fn serve(&mut self, conns: Conns) -> RedisError {
        let Conns {
            mut write,
            mut read,
        } = conns;
        let Engine {
            keys,
            node,
            local,
            queue,
            metrics,
            script,
            last_id,
            clock_offset_ms,
            ..
        } = self;
        let writer = async {
            loop {
                if queue.is_empty() {
                    queue.ready().await;
                    continue;
                }
                if let Err(err) = write_batch(&mut write, queue, keys, node, script, metrics).await
                {
                    return err;
                }
            }
        };
        let reader = read_stream(
            &mut read,
            keys,
            node,
            local.as_ref(),
            metrics,
            *clock_offset_ms,
            last_id,
        );
        tokio::select! {
            err = writer => err,
            err = reader => err,
        }
    }

    async fn write_batch(&self, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
        write_batch(
            conn,
            &self.queue,
            &self.keys,
            &self.node,
            &self.script,
            &self.metrics,
        )
        .await
    }
}

/// Sends up to [`BATCH`] queued writes in one pipeline. On a connection failure they go
/// back to the queue; a write Redis refuses (a script error, a missing permission) is
/// logged and dropped rather than retried forever.
async fn write_batch(
    conn: &mut MultiplexedConnection,
    queue: &WriteQueue,
    keys: &Keys,
    node: &str,
    script: &Script,
    metrics: &BackendMetrics,
) -> Result<(), RedisError> {
    let batch = queue.take(BATCH);
    if batch.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for write in &batch {
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(2)
            .arg(keys.entry(&write.domain))
            .arg(&keys.stream)
            .arg(write.kind.as_str())
            .arg(if write.include_subdomains { "1" } else { "0" })
            .arg(write.max_age)
            .arg(write.observed.elapsed().as_millis() as u64)
            .arg(node)
            .arg(TOMBSTONE_MS)
            .arg(STREAM_MAXLEN)
            .arg(&write.domain)
            .ignore();
    }
    let sent = batch.len();
    match pipe.query_async::<()>(conn).await {
        Ok(()) => {
            queue.settle(sent);
        }
        Err(err) if is_connection_error(&err) => {
            let dropped = queue.requeue(batch);
            if dropped > 0 {
                metrics.dropped_writes.inc_by(dropped as u64);
            }
            metrics.queued_writes.set(queue.len() as i64);
            return Err(err);
        }
        Err(err) => {
            tracing::warn!("shared HSTS store refused {sent} writes: {err}");
            metrics.dropped_writes.inc_by(sent as u64);
            queue.settle(sent);
        }
    }
    metrics.queued_writes.set(queue.len() as i64);
    Ok(())
}

fn is_connection_error(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_timeout()
        || err.is_unrecoverable_error()
        || err.code() == Some("NOSCRIPT")
}

/// Reads the change stream from `last_id` on and applies each message, until an error.
async fn read_stream(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    node: &str,
    local: &dyn HstsStore,
    metrics: &BackendMetrics,
    clock_offset_ms: i64,
    last_id: &mut Option<String>,
) -> RedisError {
    loop {
        let from = last_id.clone().unwrap_or_else(|| "$".to_owned());
        let reply: Result<Option<StreamReadReply>, RedisError> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&keys.stream)
            .arg(&from)
            .query_async(conn)
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) => return err,
        };
        let Some(reply) = reply else { continue };
        for key in reply.keys {
            for message in key.ids {
                let field = |name: &str| -> Option<String> {
                    message
                        .map
                        .get(name)
                        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                };
                let (Some(domain), Some(source)) = (field("d"), field("s")) else {
                    *last_id = Some(message.id.clone());
                    continue;
                };
                let incl = field("i").unwrap_or_default();
                let remaining: i64 = field("r").and_then(|r| r.parse().ok()).unwrap_or(-1);
                let written: i64 = field("t").and_then(|t| t.parse().ok()).unwrap_or(0);
                let elapsed = (unix_ms() + clock_offset_ms - written).max(0) as u64;
                let remote = field("n").as_deref() != Some(node);
                if let Some(state) =
                    RemoteState::parse(&source, &incl, remaining).and_then(|s| s.aged(elapsed))
                {
                    apply_local(local, &domain, state);
                }
                if remote {
                    metrics.remote_changes.inc();
                    metrics.lag_seconds.set(elapsed as f64 / 1000.0);
                }
                *last_id = Some(message.id.clone());
            }
        }
    }
}

/// Puts the shared state of one domain into the local copy, through the store's own
/// operations (so its persistence and metrics see the change) but underneath the
/// write-through wrapper (so it is not published again).
pub fn apply_local(local: &dyn HstsStore, domain: &str, state: RemoteState) {
    let exact = local
        .lookup(domain)
        .filter(|e| e.domain == domain && e.source != Source::Preload);
    match state {
        RemoteState::Deleted => {
            if exact.is_some() {
                local.remove(domain);
            }
        }
        RemoteState::Entry {
            manual,
            include_subdomains,
            remaining_ms,
        } => {
            let max_age = max_age_secs(remaining_ms);
            let expires_at = now_unix().saturating_add(max_age);
            let source = if manual {
                Source::Manual
            } else {
                Source::Learned
            };
            if let Some(e) = &exact {
                if e.source == source
                    && e.include_subdomains == include_subdomains
                    && e.expires_at == Some(expires_at)
                {
                    return;
                }
            }
            if manual {
                let _ = local.add_manual(domain, include_subdomains, max_age);
            } else {
                // The local store refuses a header over a manual entry; Redis decided this
                // learned entry replaced it (the manual one was deleted or expired there).
                if exact.is_some_and(|e| e.source == Source::Manual) {
                    local.remove(domain);
                }
                local.apply(&StsUpdate::Learn {
                    host: domain.to_owned(),
                    policy: StsPolicy {
                        max_age,
                        include_subdomains,
                        preload: false,
                    },
                });
            }
        }
    }
}

/// The reply of `XREVRANGE … COUNT 1`: the newest message, if any.
struct StreamReadReplyRange(redis::streams::StreamRangeReply);

impl StreamReadReplyRange {
    fn first_id(&self) -> Option<String> {
        self.0.ids.first().map(|m| m.id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsts::store::MemoryStore;

    #[test]
    fn keys_tell_entries_from_the_stream() {
        let keys = Keys::new("strictproxy:hsts:");
        assert_eq!(keys.entry("a.test"), "strictproxy:hsts:a.test");
        assert_eq!(keys.stream, "strictproxy:hsts::stream");
        assert_eq!(keys.domain_of("strictproxy:hsts:a.test"), Some("a.test"));
        assert_eq!(keys.domain_of("strictproxy:hsts::stream"), None);
        assert_eq!(keys.domain_of("strictproxy:hsts:"), None);
        assert_eq!(keys.domain_of("other:a.test"), None);
    }

    #[test]
    fn remote_states_apply_to_the_local_copy() {
        let store = MemoryStore::new();
        let learned = |incl| RemoteState::Entry {
            manual: false,
            include_subdomains: incl,
            remaining_ms: 60_000,
        };
        // A learned entry arrives.
        apply_local(&store, "a.test", learned(true));
        let e = store.lookup("www.a.test").unwrap();
        assert_eq!((e.source, e.domain.as_str()), (Source::Learned, "a.test"));
        // The same state again is not a change (no needless store-file write).
        let g = store.generation();
        apply_local(&store, "a.test", learned(true));
        assert_eq!(store.generation(), g);
        // A manual entry replaces it; a learned one that Redis let win replaces the manual.
        let manual = RemoteState::Entry {
            manual: true,
            include_subdomains: false,
            remaining_ms: 120_000,
        };
        apply_local(&store, "a.test", manual);
        assert_eq!(store.lookup("a.test").unwrap().source, Source::Manual);
        apply_local(&store, "a.test", learned(false));
        let e = store.lookup("a.test").unwrap();
        assert_eq!((e.source, e.include_subdomains), (Source::Learned, false));
        // A tombstone removes it; a tombstone for a host only a superdomain covers does not
        // touch the superdomain.
        apply_local(&store, "b.a.test", RemoteState::Deleted);
        assert!(store.is_enforced("a.test"));
        apply_local(&store, "a.test", RemoteState::Deleted);
        assert!(!store.is_enforced("a.test"));
    }
}
