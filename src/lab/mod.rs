//! `strictproxy lab`: a self-contained demo for security classes and QA onboarding.
//!
//! It starts, all on 127.0.0.1, four demo origins with a CA made for this run (the "lab CA",
//! trusted by the lab proxy only, as an `--upstream-ca`), the proxy itself (`--redirect-policy
//! log`) and a second proxy with `--redirect-policy rewrite`, then prints the exact curl
//! commands that show each lesson, in order:
//!
//! 1. HSTS is learned only over HTTPS (RFC 6797 §8.1);
//! 2. then a plain-HTTP URL is answered by the proxy's own `307 Internal Redirect`, and the
//!    origin is never reached (RFC 6797 §8.3, as Chromium does);
//! 3. a `302` turns a login POST into a GET and drops the form, a `307` keeps it
//!    (RFC 9110 §15.4.3, §15.4.8);
//! 4. a `307` to another origin hands the password over; `303` is the fix;
//! 5. what `--redirect-policy rewrite` changes;
//! 6. the finding lines and the report.
//!
//! The demo origins answer by name (`--resolve NAME=127.0.0.1` for each), so nothing is ever
//! looked up in DNS and no traffic leaves loopback. Every request that reaches an origin prints
//! an `origin` line on stdout: the absence of one is how the 307 lesson shows that the proxy
//! answered alone. Ctrl-C (or SIGTERM) stops the proxies (draining them and flushing the
//! traffic logs and the HSTS store) and the origins; the lab's files are kept for
//! `strictproxy report`.

mod lessons;
mod origin;

pub use lessons::{lessons, shell_quote};
use origin::{serve_origin, Site, Transport};

use crate::config::Config;
use crate::redirect::RedirectPolicy;
use crate::server::{self as proxy, RunningProxy, StartError};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, STRICT_TRANSPORT_SECURITY};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// The HTTPS site that teaches HSTS; it speaks TLS and plain HTTP on one port, so that its
/// `http://` URL and the `https://` URL the 307 leads to name the same port (RFC 6797 §8.3
/// keeps a non-default port across the upgrade).
pub const HSTS_HOST: &str = "hsts.lab.test";
/// A plain-HTTP site that never sends HSTS: the proxy keeps forwarding it in clear.
pub const PLAIN_HOST: &str = "plain.lab.test";
/// The HTTPS shop with the login forms (302, 307, 307 to another origin, 303 to it).
pub const SHOP_HOST: &str = "shop.lab.test";
/// The other origin that the cross-origin 307 hands the login to.
pub const EVIL_HOST: &str = "evil.lab.test";
/// Every name the lab serves; each is mapped to 127.0.0.1 with a `resolve` entry.
pub const LAB_HOSTS: [&str; 4] = [HSTS_HOST, PLAIN_HOST, SHOP_HOST, EVIL_HOST];

/// The login every lesson posts; the password is what the lessons follow.
pub const LOGIN_FORM: &str = "user=alice&password=hunter2";

/// What the HSTS site sends: one year, as most real sites do.
const STS_VALUE: &str = "max-age=31536000";

/// Largest request body a demo origin reads; a login form is a few dozen bytes.
const MAX_BODY: usize = 64 * 1024;

/// Why the lab could not run. `Proxy` is the proxy's own start-up error (CA, traffic log,
/// bind); the others are the lab's set-up around it.
#[derive(Debug, Error)]
pub enum LabError {
    /// The lab serves and prints loopback URLs only; a non-loopback listener would put its
    /// demo origins (and a password form) within reach of the network.
    #[error("the lab listens on loopback only: `{0}` is not a loopback address (use --listen 127.0.0.1:PORT)")]
    NotLoopback(SocketAddr),
    #[error("cannot create the lab folder {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the lab CA: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot set up TLS for the lab origins: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot bind a lab origin on 127.0.0.1: {0}")]
    OriginBind(std::io::Error),
    #[error(transparent)]
    Proxy(#[from] StartError),
    #[error("cannot print the lessons: {0}")]
    Print(std::io::Error),
    #[error("cannot watch for Ctrl-C: {0}")]
    Signal(std::io::Error),
}

/// Runs the lab until Ctrl-C or SIGTERM.
///
/// `config` carries the usual flags: `listen` (the lab proxy's address; if its port is taken,
/// an ephemeral one is used and said), `ca_dir` (the proxy CA that curl and browsers trust),
/// `admin` (an ephemeral loopback port when unset), `traffic_log`, `preload`, `upstream_ca`,
/// `resolve` and `passthrough` are honoured.
/// The lab always starts with a fresh HSTS store in its own folder (so that lesson 1 has
/// something to learn), runs the first proxy with `--redirect-policy log` and the second with
/// `rewrite`, and needs no `--auth` since it listens on loopback only.
pub async fn run(config: Config) -> Result<(), LabError> {
    // Listen for the signals first: whoever reads the lessons (a person, a test) may press
    // Ctrl-C at once, and must meet a clean stop, not the default action (dying unflushed).
    let stop = Stop::listen()?;
    let lab = Lab::start(config).await?;
    let text = lessons(&lab.info);
    let printed = {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    };
    let waited = match printed {
        Ok(()) => stop.wait().await,
        Err(err) => Err(LabError::Print(err)),
    };
    say("stopping the lab: draining the proxies, then writing the traffic logs and the HSTS store");
    let dir = lab.info.dir.clone();
    lab.shutdown().await;
    say(&format!(
        "lab stopped; its files are kept in {}",
        dir.display()
    ));
    waited
}

/// Everything the lessons print: addresses, ports and paths of this run.
#[derive(Clone, Debug)]
pub struct LabInfo {
    /// The lab proxy (`--redirect-policy log`).
    pub proxy: SocketAddr,
    /// Set when the configured listen address was taken and an ephemeral port was used.
    pub fallback_from: Option<SocketAddr>,
    /// The second proxy (`--redirect-policy rewrite`).
    pub rewrite_proxy: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The proxy CA that clients trust (`--cacert`).
    pub proxy_ca: PathBuf,
    /// The lab CA that signed the origins' certificate (trusted by the proxies only).
    pub lab_ca: PathBuf,
    pub traffic_log: PathBuf,
    pub rewrite_log: PathBuf,
    pub hsts_store: PathBuf,
    /// The lab's own folder.
    pub dir: PathBuf,
    pub ports: Ports,
    /// How to run this binary again (for the report command).
    pub exe: String,
}

/// The ephemeral port of each demo origin.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub hsts: u16,
    pub plain: u16,
    pub shop: u16,
    pub evil: u16,
}

struct Lab {
    info: LabInfo,
    proxy: RunningProxy,
    rewrite: RunningProxy,
    origins: Vec<JoinHandle<()>>,
}

impl Lab {
    async fn start(config: Config) -> Result<Lab, LabError> {
        if !config.listen.ip().is_loopback() {
            return Err(LabError::NotLoopback(config.listen));
        }
        let dir = make_lab_dir()?;
        let (lab_ca, tls) = make_lab_ca(&dir)?;

        // Bind every origin first: the shop's cross-origin redirects must name evil's port.
        let localhost = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let mut listeners = Vec::with_capacity(4);
        for _ in 0..4 {
            let listener = TcpListener::bind(localhost)
                .await
                .map_err(LabError::OriginBind)?;
            let port = listener.local_addr().map_err(LabError::OriginBind)?.port();
            listeners.push((listener, port));
        }
        let ports = Ports {
            hsts: listeners[0].1,
            plain: listeners[1].1,
            shop: listeners[2].1,
            evil: listeners[3].1,
        };
        let acceptor = TlsAcceptor::from(tls);
        let sites = [
            (Site::Hsts, Transport::Both(acceptor.clone())),
            (Site::Plain, Transport::Plain),
            (Site::Shop, Transport::Tls(acceptor.clone())),
            (Site::Evil, Transport::Tls(acceptor)),
        ];
        let origins = listeners
            .into_iter()
            .zip(sites)
            .map(|((listener, _), (site, transport))| {
                tokio::spawn(serve_origin(listener, site, transport, ports))
            })
            .collect();

        let traffic_log = config
            .traffic_log
            .clone()
            .unwrap_or_else(|| dir.join("traffic.jsonl"));
        let rewrite_log = dir.join("traffic-rewrite.jsonl");
        let hsts_store = dir.join("hsts.json");

        let mut inner = config;
        for host in LAB_HOSTS {
            inner
                .resolve
                .insert(host.to_string(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        inner.upstream_ca.push(lab_ca.clone());
        inner.hsts_store = Some(hsts_store.clone());
        inner.traffic_log = Some(traffic_log.clone());
        inner.redirect_policy = RedirectPolicy::Log;
        inner.auth = None;
        // The admin API shows what was learned the moment it is learned (the store file
        // follows within 2 s); loopback, ephemeral port, unless --admin names one.
        if inner.admin.is_none() {
            inner.admin = Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
        }

        let mut fallback_from = None;
        let proxy = match proxy::start(inner.clone()).await {
            Ok(proxy) => proxy,
            // Another proxy (often a strictproxy of one's own) already has the port: the lab
            // is a demo, so it takes a free port and says so rather than refusing to start.
            Err(StartError::Bind { addr, source })
                if addr == inner.listen
                    && addr.port() != 0
                    && source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                fallback_from = Some(addr);
                inner.listen.set_port(0);
                proxy::start(inner.clone()).await?
            }
            Err(err) => return Err(err.into()),
        };

        // The rewrite proxy: same CA and origins, its own log, no admin API and no store file
        // (what it learns stays in memory; it is only there for lesson 5).
        let mut second = inner;
        second.listen.set_port(0);
        second.admin = None;
        second.hsts_store = None;
        second.traffic_log = Some(rewrite_log.clone());
        second.redirect_policy = RedirectPolicy::Rewrite;
        let rewrite = match proxy::start(second).await {
            Ok(rewrite) => rewrite,
            Err(err) => {
                proxy.shutdown().await;
                return Err(err.into());
            }
        };

        let exe = std::env::current_exe()
            .map(|path| path.display().to_string())
            .unwrap_or_else(|_| "strictproxy".to_string());
        let info = LabInfo {
            proxy: proxy.addr,
            fallback_from,
            rewrite_proxy: rewrite.addr,
            admin: proxy.admin_addr,
            proxy_ca: absolute(proxy.ca_path()),
            lab_ca,
            traffic_log: absolute(&traffic_log),
            rewrite_log,
            hsts_store,
            dir,
            ports,
            exe,
        };
        Ok(Lab {
            info,
            proxy,
            rewrite,
            origins,
        })
    }

    /// Stops the proxies (each drains, then flushes its store and log) and the origins.
    async fn shutdown(self) {
        tokio::join!(self.proxy.shutdown(), self.rewrite.shutdown());
        // Aborting an origin's accept task drops its JoinSet, which aborts its connections.
        for origin in &self.origins {
            origin.abort();
        }
        for origin in self.origins {
            let _ = origin.await;
        }
    }
}

/// A folder of its own for this run: the lab CA, the traffic logs and the HSTS store.
fn make_lab_dir() -> Result<PathBuf, LabError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!("strictproxy-lab-{}-{stamp}", std::process::id()));
    // create_dir, not create_dir_all: a folder that already exists is not ours to reuse.
    std::fs::create_dir(&path).map_err(|source| LabError::Folder {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Paths are printed for copy and paste from any folder.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Makes the lab CA and one certificate for every lab name, writes the CA certificate (only
/// the certificate: its key never leaves memory) and returns the origins' TLS settings.
fn make_lab_ca(dir: &Path) -> Result<(PathBuf, Arc<rustls::ServerConfig>), LabError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "strictproxy lab origin CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params =
        CertificateParams::new(LAB_HOSTS.iter().map(|h| h.to_string()).collect::<Vec<_>>())?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "strictproxy lab origins");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key)?;

    let path = dir.join("lab-ca.pem");
    std::fs::write(&path, ca_cert.pem()).map_err(|source| LabError::Write {
        path: path.clone(),
        source,
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((path, Arc::new(tls)))
}

/// Ctrl-C (SIGINT) or SIGTERM (a service manager, `timeout`, a test harness), listened for
/// from the moment this is made.
struct Stop {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Stop {
    fn listen() -> Result<Stop, LabError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Stop {
                interrupt: signal(SignalKind::interrupt()).map_err(LabError::Signal)?,
                terminate: signal(SignalKind::terminate()).map_err(LabError::Signal)?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Stop {})
        }
    }

    #[cfg_attr(not(unix), allow(unused_mut))]
    async fn wait(mut self) -> Result<(), LabError> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
            Ok(())
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.map_err(LabError::Signal)
        }
    }
}

/// One line on stdout. A closed stdout (the lab piped into `head`) must not panic an origin
/// task, as `println!` would.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
