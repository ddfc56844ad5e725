//! What the proxy's connections and requests share, split by what needs it, so a function
//! states what it uses by the part it takes: [`Recorder`] (metrics and traffic log) for
//! finishing an exchange, [`CaMaterial`](crate::proxy::pages::CaMaterial) for the local pages,
//! [`Policy`] for routing, the upstream clients for forwarding. [`Shared`] bundles the parts for
//! the connection tasks that need several.

use crate::ca::Interceptor;
use crate::config::Config;
use crate::hsts::store::HstsStore;
use crate::metrics::Metrics;
use crate::proxy::pages::CaMaterial;
use crate::proxy::pool::Upstream;
use crate::proxy::route::Policy;
use crate::redirect::RedirectChains;
use crate::traffic::TrafficLog;
use http::HeaderValue;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use std::sync::Arc;
use tokio::sync::watch;

/// Where a finished exchange is written: the metrics and the traffic log, kept together so the
/// two always agree.
pub struct Recorder {
    pub metrics: Metrics,
    pub traffic: Option<TrafficLog>,
    /// The last exchanges and their broadcast, for the web console.
    pub feed: crate::feed::Feed,
    /// `redact_credentials`: credentials in recorded headers become `[redacted]`.
    pub redact_credentials: bool,
}

/// The state every connection task holds.
pub struct Shared {
    pub config: Config,
    /// The HSTS store, behind its trait so another backend can replace the in-memory one.
    pub hsts: Arc<dyn HstsStore>,
    /// Mints and caches the leaves served to intercepted clients.
    pub interceptor: Interceptor,
    /// The pooled upstream clients and the resolver.
    pub upstream: Upstream,
    /// Metrics and traffic log: what `Exchange::finish` writes to.
    pub recorder: Recorder,
    /// The CA certificate served by the local pages and the admin API.
    pub ca: CaMaterial,
    /// Everything the pure router reads besides the request and the HSTS store.
    pub policy: Policy,
    /// Per-client redirect chains (loop detection across exchanges).
    pub chains: RedirectChains,
    /// This proxy's `Via` entry, `1.1 <pseudonym>`.
    pub via: HeaderValue,
    /// The HTTP server settings for client connections (listener and tunnels alike).
    pub server: auto::Builder<TokioExecutor>,
    /// The same HTTP/1 settings without version sniffing, for connections whose first bytes
    /// are not HTTP/2's preface ([`crate::proxy::park`]).
    pub http1: hyper::server::conn::http1::Builder,
    /// Turns true when the proxy is asked to stop; tunnels then finish their requests in flight.
    pub stopping: watch::Receiver<bool>,
    /// The tasks serving CONNECT tunnels, so shutdown can wait for them to drain.
    pub tunnels: tokio_util::task::TaskTracker,
}
