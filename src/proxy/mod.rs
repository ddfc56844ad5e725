//! The proxy: everything that touches sockets on the client and upstream sides.
//!
//! - [`listener`]: accept loop, connection cap, graceful shutdown
//! - [`route`]: the pure router (admission, target, loops, local pages, HSTS upgrade)
//! - [`pipeline`]: the I/O per request (route, forward, learn, audit, log)
//! - [`connect`]: CONNECT — blind tunnel or TLS interception
//! - [`upstream`]: pooled clients, `--resolve`, verified TLS
//! - [`target`], [`headers`], [`guard`]: pure parsing and checks used by the router
//! - [`respond`], [`pages`]: the answers the proxy makes itself
//! - [`state`]: what connections share, split by what needs it
//!
//! `crate::server` wires them together.

pub mod body;
pub mod connect;
pub mod errors;
pub mod exchange;
pub mod guard;
pub mod headers;
pub mod idle;
pub mod listener;
pub mod pages;
pub mod pipeline;
pub mod prefixed;
pub mod respond;
pub mod route;
pub mod state;
pub mod target;
pub mod upstream;

use crate::config::Config;
use crate::hsts::persist;
use crate::hsts::preload;
use crate::hsts::store::{HstsStore, MemoryStore};
use std::sync::Arc;

/// Loads the HSTS store: preload lists, then what was persisted.
pub fn load_hsts(config: &Config) -> Result<Arc<dyn HstsStore>, preload::PreloadError> {
    let mut preloaded = Vec::new();
    for path in &config.preload {
        let entries = preload::load_preload_file(path)?;
        let force_https = entries.iter().filter(|e| e.force_https).count();
        tracing::info!(
            "preload list {}: {force_https} force-https entries",
            path.display()
        );
        preloaded.extend(entries);
    }
    let store = MemoryStore::with_preload(preloaded);
    if let Some(path) = &config.hsts_store {
        let outcome = persist::load(path);
        if let Some(warning) = &outcome.warning {
            tracing::warn!("{warning}");
        }
        store.restore(outcome.entries);
    }
    Ok(Arc::new(store))
}
