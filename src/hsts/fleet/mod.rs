//! A fleet of proxies sharing one HSTS store on Redis (or Valkey: the same protocol).
//!
//! Each instance keeps its full copy of the learned and manual entries in its own
//! [`crate::hsts::store::MemoryStore`]; the request path reads only that copy. [`attach`]
//! wraps the copy so that every local change is written through to Redis in the background
//! ([`shared`]), and starts the task that applies every other instance's changes ([`sync`]).
//! The rules that decide between conflicting changes run inside Redis, in one Lua script
//! ([`script`]), so the whole fleet agrees on them.
//!
//! The shared store holds every HSTS host the fleet's users visited: a browsing history.
//! Keep Redis on a private address, behind an ACL user limited to the prefix, over TLS
//! (`rediss://`) when it leaves the machine.

pub mod queue;
pub mod script;
pub mod shared;
pub mod sync;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use redis::Client;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::queue::WriteQueue;
use self::shared::WriteThrough;
use self::sync::{Engine, FirstSync, Keys};
use crate::config::Config;
use crate::hsts::store::{HstsStore, MemoryStore};
use crate::metrics::BackendMetrics;

/// Writes kept while Redis is away; past this the oldest are dropped (and counted).
pub const QUEUE_BOUND: usize = 100_000;

/// How long start-up waits for the first full load before serving from the local copy.
const FIRST_SYNC_WAIT: Duration = Duration::from_secs(10);

/// Why the shared store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The URL is not a Redis URL the client understands.
    #[error("--hsts-redis {url}: {message}")]
    Url { url: String, message: String },
    /// The extra CA certificates for `rediss://` could not be read.
    #[error("--upstream-ca {path}: {source}")]
    Roots {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Redis could not be reached (only an error where the shared store is the point, as in
    /// the `hsts` subcommands; the proxy starts anyway).
    #[error("shared HSTS store {0} is unreachable")]
    Unreachable(String),
    /// Some writes were not confirmed by Redis in time.
    #[error("shared HSTS store {0}: writes not confirmed in time")]
    NotWritten(String),
}

/// The running link to the shared store. Dropping it stops the sync task.
pub struct Fleet {
    queue: Arc<WriteQueue>,
    metrics: BackendMetrics,
    task: JoinHandle<()>,
    first: FirstSync,
    shown_url: String,
}

impl Fleet {
    /// What start-up found: entries loaded from Redis, or that Redis was unreachable.
    pub fn first_sync(&self) -> FirstSync {
        self.first
    }

    /// The URL with any password masked, fit for banners and logs.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// The backend's metrics, for [`crate::metrics::Metrics::register_backend`].
    pub fn metrics(&self) -> &BackendMetrics {
        &self.metrics
    }

    /// Waits until every write queued so far has been sent to Redis (or given up on), for
    /// at most `within`. Returns whether it got there.
    pub async fn flush(&self, within: Duration) -> bool {
        let mark = self.queue.pushed();
        let deadline = tokio::time::Instant::now() + within;
        while !self.queue.settled_up_to(mark) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Masks the password of a Redis URL (`redis://user:***@host:port/db`), so that it can be
/// printed: the config's one masker.
pub fn mask_url(url: &str) -> String {
    crate::config::mask_url_password(url)
}

/// The Redis client for `url`. `rediss://` is verified against the system roots plus the
/// `--upstream-ca` certificates, as upstream TLS is.
fn client(url: &str, upstream_ca: &[std::path::PathBuf]) -> Result<Client, FleetError> {
    let bad = |message: String| FleetError::Url {
        url: mask_url(url),
        message,
    };
    if !url.starts_with("rediss://") {
        return Client::open(url).map_err(|e| bad(e.to_string()));
    }
    let mut pem = String::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        pem.push_str(&pem_block(&cert));
    }
    for path in upstream_ca {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Roots {
            path: path.clone(),
            source,
        })?;
        pem.push_str(&text);
        pem.push('\n');
    }
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.into_bytes()),
    };
    Client::build_with_tls(url, certs).map_err(|e| bad(e.to_string()))
}

fn pem_block(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A name for this instance in the change stream, distinct between processes.
fn node_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{}-{:016x}", std::process::id(), hasher.finish())
}

/// Puts `local` (the instance's copy, already warm from `--hsts-store` when given) behind the
/// shared store at `config.hsts_redis`, loads the shared set into it and starts the sync
/// task. Waits for the first load (so that the instance enforces the fleet's entries from
/// its first request) but not for Redis to come up: when unreachable, it returns at once
/// and the task keeps retrying. Returns the store to serve from and the link.
pub async fn attach(
    config: &Config,
    url: &str,
    local: Arc<dyn HstsStore>,
) -> Result<(Arc<dyn HstsStore>, Fleet), FleetError> {
    let client = client(url, &config.upstream_ca)?;
    let shown_url = mask_url(url);
    let queue = Arc::new(WriteQueue::new(QUEUE_BOUND));
    let metrics = BackendMetrics::default();
    let warned_drop = Arc::new(AtomicBool::new(false));
    let engine = Engine {
        client,
        keys: Keys::new(&config.hsts_redis_prefix),
        node: node_name(),
        local: local.clone(),
        queue: queue.clone(),
        metrics: metrics.clone(),
        warned_drop: warned_drop.clone(),
        shown_url: shown_url.clone(),
        script: script::apply_script(),
        last_id: None,
        clock_offset_ms: 0,
    };
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(engine.run(tx));
    let first = match tokio::time::timeout(FIRST_SYNC_WAIT, rx).await {
        Ok(Ok(first)) => first,
        _ => FirstSync::Unreachable,
    };
    if let FirstSync::Loaded(n) = first {
        tracing::info!("shared HSTS store {shown_url}: {n} entries loaded");
    }
    let store: Arc<dyn HstsStore> = Arc::new(WriteThrough::new(
        local,
        queue.clone(),
        metrics.clone(),
        warned_drop,
    ));
    Ok((
        store,
        Fleet {
            queue,
            metrics,
            task,
            first,
            shown_url,
        },
    ))
}

/// Opens the shared store for the `strictproxy hsts` subcommands: a fresh local copy loaded
/// from Redis (with the configured preload lists, so `query` answers as a proxy would), whose
/// changes go straight to Redis. Fails when Redis is unreachable or `hsts_redis` is unset.
/// After changing it, call [`Fleet::flush`] before exiting.
pub async fn open_shared_store(config: &Config) -> Result<(Arc<dyn HstsStore>, Fleet), FleetError> {
    let Some(url) = config.hsts_redis.as_deref() else {
        return Err(FleetError::Url {
            url: String::new(),
            message: "no shared store configured (--hsts-redis URL)".into(),
        });
    };
    // A preload list that does not load only makes `query` less complete; the shared
    // entries are what these commands are about.
    let preloaded = crate::hsts::load::load_preload_files(&config.preload).unwrap_or_default();
    let local: Arc<dyn HstsStore> = Arc::new(MemoryStore::with_preload_lists(preloaded));
    let (store, fleet) = attach(config, url, local).await?;
    if fleet.first_sync() == FirstSync::Unreachable {
        return Err(FleetError::Unreachable(fleet.shown_url.clone()));
    }
    Ok((store, fleet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        for url in [
            "redis://strictproxy:s3cret@10.0.0.5:6379/0",
            "rediss://:s3cret@127.0.0.1/",
            "not a url://x:s3cret@y",
        ] {
            assert!(!mask_url(url).contains("s3cret"), "{url}");
        }
    }
}
