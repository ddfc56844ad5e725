//! The composition root: builds every part from the configuration (the CA, the HSTS store,
//! the upstream clients, the traffic log, the listeners), starts the proxy and the admin API,
//! and returns the handle that stops them in order (stop accepting, drain, then flush the
//! HSTS store and the traffic log last, so nothing learned at the end is lost).

use crate::ca::CaMaterial;
use crate::ca::{Interceptor, LeafCache, LocalCa};
use crate::config::Config;
use crate::hsts::exempt::Exemptions;
use crate::hsts::load::{load_hsts, LoadError};
use crate::hsts::persist::{self, Persister};
use crate::metrics::Metrics;
use crate::proxy::destination::Destinations;
use crate::proxy::resolve::{AddressBook, HostsFile, Resolve, SystemResolver};
use crate::proxy::route::Policy;
use crate::proxy::state::{Recorder, Shared};
use crate::proxy::{guard, listener, pool, upstream};
use crate::redirect::RedirectChains;
use crate::traffic::TrafficLog;
use http::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the proxy could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
    #[error(transparent)]
    Trust(#[from] upstream::TrustError),
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Hsts(#[from] LoadError),
    #[error("cannot open the traffic log: {0}")]
    Traffic(#[from] crate::traffic::TrafficError),
    #[error(transparent)]
    Fleet(#[from] crate::hsts::fleet::FleetError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running proxy.
pub struct RunningProxy {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    /// Where the admin API listens, when enabled.
    pub admin_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    listener: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
    persister: Option<Persister>,
    /// The link to the shared HSTS store (`--hsts-redis`), when configured.
    pub fleet: Option<crate::hsts::fleet::Fleet>,
}

impl RunningProxy {
    /// Path of the CA certificate clients must trust.
    pub fn ca_path(&self) -> &std::path::Path {
        &self.shared.ca.path
    }

    /// Reopens the traffic log (SIGHUP, after log rotation).
    pub fn reopen_traffic_log(&self) {
        if let Some(log) = &self.shared.recorder.traffic {
            log.reopen();
        }
    }

    /// Writes the HSTS store now (tests and the shutdown path use it).
    pub async fn flush(&self) {
        if let Some(persister) = &self.persister {
            if let Err(err) = persister.flush().await {
                tracing::error!("cannot write the HSTS store: {err}");
            }
        }
        if let Some(log) = &self.shared.recorder.traffic {
            log.flush().await;
        }
    }

    /// Stops accepting, drains requests in flight up to the grace period, then flushes the
    /// HSTS store and the traffic log — in that order, so nothing learned at the end is lost.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.listener.await;
        if let Some(admin) = &self.admin {
            admin.abort();
        }
        if let Some(fleet) = &self.fleet {
            fleet.flush(Duration::from_secs(2)).await;
        }
        if let Some(persister) = &self.persister {
            if let Err(err) = persister.flush().await {
                tracing::error!("cannot write the HSTS store: {err}");
            }
        }
        if let Some(log) = &self.shared.recorder.traffic {
            log.flush().await;
        }
    }
}

/// The HTTP server settings shared by the listener and the tunnels.
fn server_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper's timer also runs while a keep-alive connection waits for its next request;
        // `proxy::head_timeout` guards each head from its first byte instead.
        .header_read_timeout(None)
        .keep_alive(true)
        // hyper refuses buffers under 8 KiB; past this size a request head gets 431.
        .max_buf_size(config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_header_list_size(config.max_header_bytes.max(8192) as u32);
    builder
}

/// [`server_builder`]'s HTTP/1 settings, for connections known to be HTTP/1 (no sniffing).
fn http1_builder(config: &Config) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(config.max_header_bytes.max(8192))
        // The buffer limit alone is loose (a read may carry a head past it whole); this one
        // counts the head itself: past it, 431.
        .max_header_size(config.max_header_bytes);
    builder
}

/// What a library user (a test, an embedding) may swap in; the defaults are the system's.
#[derive(Default)]
pub struct Options {
    /// DNS for names that are not IP literals, `localhost`, `--resolve`d or in the hosts file
    /// (default: the system resolver). A test answers a public-looking name with 127.0.0.1
    /// through it, without touching the operator's own mappings.
    pub resolver: Option<Arc<dyn Resolve>>,
    /// The hosts file's names (default: `/etc/hosts`).
    pub hosts: Option<HostsFile>,
}

/// Starts the proxy (and the admin API when configured) on the current tokio runtime.
pub async fn start(config: Config) -> Result<RunningProxy, StartError> {
    start_with(config, Options::default()).await
}

/// [`start`], with [`Options`].
pub async fn start_with(config: Config, options: Options) -> Result<RunningProxy, StartError> {
    let ca = LocalCa::load_or_create(&config.ca_dir)?;
    let ca_material = CaMaterial::of(&ca);
    let cache = LeafCache::new(Arc::new(ca), config.leaf_cache_size);
    let interceptor = Interceptor::new(cache)?;

    let hsts = load_hsts(&config)?;
    if !config.preload.is_empty() {
        release_freed_memory();
    }
    // A fleet instance loads the shared set before it accepts a connection.
    let (hsts, fleet) = match config.hsts_redis.clone() {
        Some(url) => {
            let (store, fleet) = crate::hsts::fleet::attach(&config, &url, hsts).await?;
            (store, Some(fleet))
        }
        None => (hsts, None),
    };
    let mut metrics = Metrics::new();
    if let Some(fleet) = &fleet {
        metrics.register_backend(fleet.metrics());
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let listen = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;

    // Bound before the upstream side is built: the destination rules name the admin address.
    let admin_listener = match config.admin {
        Some(addr) => {
            let admin_listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let bound = admin_listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            Some((admin_listener, bound))
        }
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(|(_, bound)| *bound);

    let roots = Arc::new(upstream::root_store(&config.upstream_ca)?);
    let hosts = options.hosts.unwrap_or_else(HostsFile::system);
    let book = AddressBook::new(&config.resolve, hosts);
    let destinations = Destinations {
        admin: admin_addr,
        allow_private: config.allow_private_destinations.clone(),
    };
    let dns = options.resolver.unwrap_or_else(|| Arc::new(SystemResolver));
    let resolver = upstream::Resolver::new(book.clone(), dns, destinations.clone());
    let upstream = pool::Upstream::new(
        resolver,
        roots,
        config.connect_timeout,
        config.tls_handshake_timeout,
    )?;
    let traffic = match &config.traffic_log {
        Some(path) => Some(TrafficLog::open(path)?),
        None => None,
    };

    let pseudonym = format!("strictproxy-{:08x}", rand_token());
    let via = HeaderValue::from_str(&format!("1.1 {pseudonym}"))
        .unwrap_or_else(|_| HeaderValue::from_static("1.1 strictproxy"));
    let policy = Policy {
        credentials: config
            .auth
            .as_ref()
            .map(|(user, pass)| guard::Credentials::new(user, pass)),
        max_uri_bytes: config.max_uri_bytes,
        pseudonym,
        listen,
        passthrough: config.passthrough.clone(),
        book: Arc::new(book),
        destinations,
        exemptions: Exemptions::new(&config.hsts_exempt),
    };
    let persister = config
        .hsts_store
        .as_ref()
        .map(|path| persist::spawn_persister(hsts.clone(), path.clone()));

    let feed = crate::feed::Feed::new(config.console_history);
    let redact_credentials = config.redact_credentials;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        server: server_builder(&config),
        http1: http1_builder(&config),
        stopping: shutdown_rx.clone(),
        tunnels: tokio_util::task::TaskTracker::new(),
        chains: RedirectChains::new(20, 10_000, Duration::from_secs(60)),
        config,
        hsts,
        interceptor,
        upstream,
        recorder: Recorder {
            metrics,
            traffic,
            feed,
            redact_credentials,
        },
        ca: ca_material,
        policy,
        via,
    });

    // One call: the admin API gets only what it serves.
    let admin = admin_listener.map(|(admin_listener, bound)| {
        tokio::spawn(crate::admin::serve(
            admin_listener,
            admin_context(&shared, bound),
        ))
    });

    let listener_task = tokio::spawn(listener::run(listener, shared.clone(), shutdown_rx));
    Ok(RunningProxy {
        addr: listen,
        admin_addr,
        shared,
        shutdown,
        listener: listener_task,
        admin,
        persister,
        fleet,
    })
}

/// What the admin listener serves, and nothing more (issue 10).
fn admin_context(shared: &Arc<Shared>, addr: SocketAddr) -> crate::admin::AdminContext {
    let metrics_source = shared.clone();
    crate::admin::AdminContext {
        addr,
        hsts: shared.hsts.clone(),
        exemptions: shared.policy.exemptions.clone(),
        metrics: Arc::new(move || {
            let s = &metrics_source;
            let leaves = s.interceptor.leaf_cache();
            s.recorder.metrics.sync_hsts_evictions(s.hsts.evictions());
            s.recorder
                .metrics
                .render(s.hsts.counts(), leaves.hits(), leaves.misses())
        }),
        ca: shared.ca.clone(),
        feed: shared.recorder.feed.clone(),
    }
}

/// Parsing a large preload list (150,000 entries is ~17 MB of JSON) peaks at several times the
/// size of the index it leaves behind; an allocator keeps freed pages for reuse, so without
/// this the idle proxy would carry the parse's high-water mark for its whole life. Both
/// allocators are asked: the binary's (mimalloc) and glibc's (tests, and anything C).
fn release_freed_memory() {
    // SAFETY: mi_collect only frees and returns pages with no live allocation in them; it is
    // safe from any thread at any time, and a no-op for memory mimalloc does not manage.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no live
    // allocation and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A per-process token: not a secret, only distinct between proxies that might chain.
fn rand_token() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}
