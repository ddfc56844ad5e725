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

use crate::config::Config;
use crate::proxy::{self, RunningProxy, StartError};
use crate::redirect::RedirectPolicy;
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

// ---------------------------------------------------------------------------------------------
// The lessons: pure text from the run's addresses and paths.
// ---------------------------------------------------------------------------------------------

/// Quotes a word for a POSIX shell when it needs it, so that every printed command runs
/// verbatim when pasted (temp folders and `--ca-dir` may hold spaces).
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The text `strictproxy lab` prints: where everything is, then each lesson's commands, each
/// command on a line starting with `  $ ` and followed by what to look for.
pub fn lessons(info: &LabInfo) -> String {
    let p = ProxyArgs {
        proxy: info.proxy,
        ca: shell_quote(&info.proxy_ca.display().to_string()),
    };
    let r = ProxyArgs {
        proxy: info.rewrite_proxy,
        ca: p.ca.clone(),
    };
    let Ports {
        hsts,
        plain,
        shop,
        evil,
    } = info.ports;
    let form = shell_quote(LOGIN_FORM);
    let shop_url = |path: &str| format!("https://{SHOP_HOST}:{shop}{path}");
    let mut t = String::new();
    let mut line = |text: &str| {
        t.push_str(text);
        t.push('\n');
    };

    line("strictproxy lab: every site, proxy and lesson below runs on 127.0.0.1; nothing leaves this machine.");
    if let Some(wanted) = info.fallback_from {
        line(&format!(
            "note: {wanted} is already in use (another proxy?), so the lab proxy took a free port: {}",
            info.proxy
        ));
    }
    line("");
    if let Some(admin) = info.admin {
        line(&format!(
            "  web console      http://{admin}/   (open it in a browser: live traffic, findings, HSTS store)"
        ));
    }
    line(&format!(
        "  lab proxy        http://{}   (--redirect-policy log)",
        info.proxy
    ));
    line(&format!(
        "  rewrite proxy    http://{}   (--redirect-policy rewrite, for lesson 5)",
        info.rewrite_proxy
    ));
    if let Some(admin) = info.admin {
        line(&format!("  admin API        http://{admin}/hsts"));
    }
    line(&format!(
        "  proxy CA         {}   (what curl --cacert and a browser trust)",
        info.proxy_ca.display()
    ));
    line(&format!(
        "  lab origin CA    {}   (made for this run; only the proxies trust it, as --upstream-ca)",
        info.lab_ca.display()
    ));
    line(&format!(
        "  traffic log      {}",
        info.traffic_log.display()
    ));
    line(&format!(
        "  rewrite log      {}",
        info.rewrite_log.display()
    ));
    line(&format!(
        "  HSTS store       {}   (fresh for this run)",
        info.hsts_store.display()
    ));
    line(&format!(
        "  demo origins     {HSTS_HOST}:{hsts} (https and http on one port)  {PLAIN_HOST}:{plain} (http)  {SHOP_HOST}:{shop} (https)  {EVIL_HOST}:{evil} (https)"
    ));
    line("                   the proxies map these names to 127.0.0.1 (--resolve); each request that reaches one prints an `origin` line here.");
    line("");

    line("Lesson 1: HSTS is learned only over HTTPS");
    line(&p.cmd(&format!("-i http://{HSTS_HOST}:{hsts}/")));
    line("    look for: 200 from the origin with Strict-Transport-Security, which the proxy ignores because it came in clear and");
    line("    could have been forged (RFC 6797 §8.1): the console shows the finding sts_over_http. Run it twice: still not learned.");
    line(&p.cmd_tls(&format!("-i https://{HSTS_HOST}:{hsts}/")));
    line("    look for: the same header, over HTTPS whose certificate the proxy verified: now it knows hsts.lab.test is HTTPS-only.");
    match info.admin {
        // --noproxy: the admin API is not to be reached through a proxy set in http_proxy.
        Some(admin) => {
            line(&format!(
                "  $ curl --noproxy '*' http://{admin}/hsts/{HSTS_HOST}"
            ));
            line(&format!("    look for: \"enforced\":true and the learned entry (the admin API; the store file {} follows within 2 s).", info.hsts_store.display()));
        }
        None => {
            line(&format!(
                "  $ cat {}",
                shell_quote(&info.hsts_store.display().to_string())
            ));
            line("    look for: the learned entry for hsts.lab.test (the store file is written within 2 seconds of a change).");
        }
    }
    line("");

    line("Lesson 2: then the plain-HTTP URL never leaves the proxy: 307 Internal Redirect");
    line(&p.cmd(&format!("-i http://{HSTS_HOST}:{hsts}/")));
    line("    look for: HTTP/1.1 307 Internal Redirect, Non-Authoritative-Reason: HSTS and Location https://…, answered by the");
    line("    proxy itself, as Chromium does inside the browser: no new `origin` line appears here, the request was never sent.");
    line(&p.cmd_tls(&format!("-L http://{HSTS_HOST}:{hsts}/")));
    line("    look for: curl follows the 307 and gets the page over HTTPS.");
    line(&p.cmd(&format!("-i http://{PLAIN_HOST}:{plain}/")));
    line("    look for: 200 in clear: plain.lab.test never sent HSTS over HTTPS, so the proxy forwards it as it is.");
    line("");

    line("Lesson 3: a login POST turned into a GET by a 302, kept by a 307");
    line(&p.cmd_tls(&format!("-L -d {form} {}", shop_url("/login-302"))));
    line("    look for: `received: GET, no body`: curl, like every browser, followed the 302 with a GET and dropped the form;");
    line("    the console shows method_change_risk with the fix (303 to switch to GET on purpose, 307 to keep POST).");
    line(&p.cmd_tls(&format!("-L -d {form} {}", shop_url("/login-307"))));
    line("    look for: `received: POST, 27 body bytes`: a 307 repeats the same method with the same body (RFC 9110 §15.4.8).");
    line("");

    line("Lesson 4: a 307 that hands the password to another origin, and why 303 is the fix");
    line(&p.cmd_tls(&format!("-L -d {form} {}", shop_url("/login-307-away"))));
    line("    look for: `evil.lab.test /collect received: POST … password=hunter2`: the 307 made the client re-send the login to");
    line("    another origin; the console shows cross_origin_body_replay.");
    line(&p.cmd_tls(&format!("-L -d {form} {}", shop_url("/login-303-away"))));
    line("    look for: `received: GET, no body`: a 303 tells every client to follow with a GET and no body, so the password");
    line("    stays with the shop (RFC 9110 §15.4.4). Send 303 after a form, 307/308 only to the same origin.");
    line("");

    line("Lesson 5: what --redirect-policy rewrite changes");
    line(&r.cmd_tls(&format!("-i -L -d {form} {}", shop_url("/login-302"))));
    line("    look for: a 307 (`HTTP/2 307`) where the shop sent 302, then `received: POST, 27 body bytes`: the rewrite proxy turns an");
    line("    ambiguous 301/302 after a POST into 308/307, so every client keeps the method and the body; its log line says");
    line("    \"rewritten_from\":302. It never rewrites one that points to another origin: that would create lesson 4's leak.");
    line("");

    line("Lesson 6: the finding lines and the report");
    line("    The console above shows one WARN line per finding: its kind, then the sentence that says what to fix.");
    line(&format!(
        "  $ grep -h '\"kind\"' {} {}",
        shell_quote(&info.traffic_log.display().to_string()),
        shell_quote(&info.rewrite_log.display().to_string())
    ));
    line("    look for: the same findings in the traffic logs, one JSON object per exchange with \"findings\":[{\"kind\",\"detail\"}].");
    line(&format!(
        "  $ {} report {}",
        shell_quote(&info.exe),
        shell_quote(&info.traffic_log.display().to_string())
    ));
    line("    look for: the exchanges by action (forwarded, hsts_internal_redirect), every finding with its fix, and the");
    line("    hosts that sent Strict-Transport-Security.");
    line("");

    line(&format!(
        "In a browser: set the HTTP and HTTPS proxy to 127.0.0.1 port {}, trust {} (see README, \"Trust the CA\"),",
        info.proxy.port(),
        info.proxy_ca.display()
    ));
    line(&format!(
        "then open https://{HSTS_HOST}:{hsts}/, http://{HSTS_HOST}:{hsts}/ and https://{SHOP_HOST}:{shop}/ (the login forms)."
    ));
    line("Ctrl-C stops the lab; its files are kept for the report.");
    line("");
    t
}

/// The proxy part of a curl command.
struct ProxyArgs {
    proxy: SocketAddr,
    ca: String,
}

impl ProxyArgs {
    /// A command for a plain-HTTP URL: no CA needed.
    fn cmd(&self, rest: &str) -> String {
        format!("  $ curl -x http://{} {rest}", self.proxy)
    }

    /// A command that may reach HTTPS: curl must trust the proxy CA.
    fn cmd_tls(&self, rest: &str) -> String {
        format!(
            "  $ curl -x http://{} --cacert {} {rest}",
            self.proxy, self.ca
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The demo origins.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Site {
    Hsts,
    Plain,
    Shop,
    Evil,
}

impl Site {
    fn host(self) -> &'static str {
        match self {
            Site::Hsts => HSTS_HOST,
            Site::Plain => PLAIN_HOST,
            Site::Shop => SHOP_HOST,
            Site::Evil => EVIL_HOST,
        }
    }
}

/// How an origin speaks on its port.
#[derive(Clone)]
enum Transport {
    Plain,
    Tls(TlsAcceptor),
    /// TLS when the first byte is a handshake record (0x16), plain HTTP otherwise.
    Both(TlsAcceptor),
}

async fn serve_origin(listener: TcpListener, site: Site, transport: Transport, ports: Ports) {
    // Connections live in this set: aborting this task drops it, which aborts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(stream, site, transport.clone(), ports));
            }
            // Reap finished connections so the set does not grow with every request.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, site: Site, transport: Transport, ports: Ports) {
    let tls = match transport {
        Transport::Plain => None,
        Transport::Tls(acceptor) => Some(acceptor),
        Transport::Both(acceptor) => {
            let mut first = [0u8; 1];
            match stream.peek(&mut first).await {
                // 0x16: a TLS handshake record (RFC 8446 §5.1, ContentType handshake).
                Ok(1) if first[0] == 0x16 => Some(acceptor),
                Ok(1) => None,
                _ => return,
            }
        }
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    match tls {
        Some(acceptor) => {
            if let Ok(stream) = acceptor.accept(stream).await {
                let service = service_fn(move |req| answer(site, "https", ports, req));
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        }
        None => {
            let service = service_fn(move |req| answer(site, "http", ports, req));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    }
}

type OriginResponse = Response<Full<Bytes>>;

async fn answer(
    site: Site,
    scheme: &'static str,
    ports: Ports,
    req: Request<Incoming>,
) -> Result<OriginResponse, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let html = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    say(&format!(
        "origin  {} ({scheme}) received {method} {path} with {} body bytes",
        site.host(),
        body.len()
    ));
    Ok(route(site, scheme, ports, &method, &path, &body, html))
}

/// What each demo origin answers. Plain text for curl, a small page for a browser.
fn route(
    site: Site,
    scheme: &str,
    ports: Ports,
    method: &Method,
    path: &str,
    body: &[u8],
    html: bool,
) -> OriginResponse {
    match site {
        Site::Hsts => {
            let text = if scheme == "https" {
                format!("{HSTS_HOST} over HTTPS. This answer carries Strict-Transport-Security: {STS_VALUE}; the proxy verified the certificate, so it has learned that {HSTS_HOST} is HTTPS-only.")
            } else {
                format!("{HSTS_HOST} over plain HTTP. This answer carries Strict-Transport-Security too, but in clear anyone on the path could have added or removed it, so the proxy ignores it (RFC 6797 §8.1).")
            };
            let mut response = page(&text, html, true);
            // Sent on both transports on purpose: lesson 1 shows the plain one ignored.
            response.headers_mut().insert(
                STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(STS_VALUE),
            );
            response
        }
        Site::Plain => page(
            &format!("{PLAIN_HOST} over plain HTTP. This site never sends Strict-Transport-Security, so the proxy forwards it in clear."),
            html,
            true,
        ),
        Site::Shop => match (method, path) {
            (&Method::GET, "/") => shop_home(html),
            (&Method::POST, "/login-302") => redirect(StatusCode::FOUND, "/welcome".into()),
            (&Method::POST, "/login-307") => {
                redirect(StatusCode::TEMPORARY_REDIRECT, "/welcome".into())
            }
            (&Method::POST, "/login-307-away") => redirect(
                StatusCode::TEMPORARY_REDIRECT,
                format!("https://{EVIL_HOST}:{}/collect", ports.evil),
            ),
            (&Method::POST, "/login-303-away") => redirect(
                StatusCode::SEE_OTHER,
                format!("https://{EVIL_HOST}:{}/collect", ports.evil),
            ),
            (_, "/welcome") => page(&received(SHOP_HOST, method, path, body), html, false),
            _ => {
                let mut response = page(
                    &format!("{SHOP_HOST}: nothing at {method} {path}; the forms are at /"),
                    html,
                    false,
                );
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            }
        },
        Site::Evil => page(&received(EVIL_HOST, method, path, body), html, false),
    }
}

/// "shop.lab.test /welcome received: POST, 27 body bytes: user=…": what the lessons look for.
fn received(host: &str, method: &Method, path: &str, body: &[u8]) -> String {
    if body.is_empty() {
        format!("{host} {path} received: {method}, no body")
    } else {
        format!(
            "{host} {path} received: {method}, {} body bytes: {}",
            body.len(),
            String::from_utf8_lossy(body)
        )
    }
}

fn redirect(status: StatusCode, location: String) -> OriginResponse {
    let text = format!("{status}: go to {location}\n");
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A text answer, or for a browser a page that also shows the URL it ended on: the browser
/// test reads it back (`#where`) to prove where the 307 led.
fn page(text: &str, html: bool, show_url: bool) -> OriginResponse {
    let (body, kind) = if html {
        let mut doc = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>strictproxy lab</title>\
             <style>body{font:18px sans-serif;margin:2em;max-width:50em}code{background:#eee;padding:2px 4px}</style>\
             </head><body><h1>strictproxy lab</h1>",
        );
        let _ = write!(doc, "<p>{}</p>", escape_html(text));
        if show_url {
            doc.push_str(
                "<p>This page was loaded from <code id=\"where\"></code></p>\
                 <script>document.getElementById('where').textContent = location.href;</script>",
            );
        }
        doc.push_str("</body></html>\n");
        (doc, "text/html; charset=utf-8")
    } else {
        (format!("{text}\n"), "text/plain; charset=utf-8")
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}

fn shop_home(html: bool) -> OriginResponse {
    if !html {
        return page(
            &format!("{SHOP_HOST}: POST a login to /login-302, /login-307, /login-307-away or /login-303-away"),
            false,
            false,
        );
    }
    let mut doc = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>shop.lab.test</title>\
         <style>body{font:18px sans-serif;margin:2em}form{margin:1em 0}</style></head><body>\
         <h1>shop.lab.test: four ways to answer a login</h1>",
    );
    for (path, what) in [
        (
            "/login-302",
            "answers 302: the browser follows with a GET and drops the form",
        ),
        (
            "/login-307",
            "answers 307: the browser re-sends the POST and the form",
        ),
        (
            "/login-307-away",
            "answers 307 to evil.lab.test: the browser hands it the password",
        ),
        (
            "/login-303-away",
            "answers 303 to evil.lab.test: the browser follows with a GET, without the password",
        ),
    ] {
        let _ = write!(
            doc,
            "<form method=\"post\" action=\"{path}\"><input name=\"user\" value=\"alice\"> \
             <input name=\"password\" type=\"password\" value=\"hunter2\"> \
             <button>{path}</button> {}</form>",
            escape_html(what)
        );
    }
    doc.push_str("</body></html>\n");
    let mut response = Response::new(Full::new(Bytes::from(doc)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> LabInfo {
        LabInfo {
            proxy: "127.0.0.1:8080".parse().unwrap(),
            fallback_from: None,
            rewrite_proxy: "127.0.0.1:40001".parse().unwrap(),
            admin: None,
            proxy_ca: PathBuf::from("/tmp/my certs/ca.pem"),
            lab_ca: PathBuf::from("/tmp/lab/lab-ca.pem"),
            traffic_log: PathBuf::from("/tmp/lab/traffic.jsonl"),
            rewrite_log: PathBuf::from("/tmp/lab/traffic-rewrite.jsonl"),
            hsts_store: PathBuf::from("/tmp/lab/hsts.json"),
            dir: PathBuf::from("/tmp/lab"),
            ports: Ports {
                hsts: 1001,
                plain: 1002,
                shop: 1003,
                evil: 1004,
            },
            exe: "/usr/bin/strictproxy".into(),
        }
    }

    #[test]
    fn shell_quoting() {
        // (word, as printed)
        let rows = [
            ("/tmp/a/ca.pem", "/tmp/a/ca.pem"),
            ("/tmp/my certs/ca.pem", "'/tmp/my certs/ca.pem'"),
            (
                "user=alice&password=hunter2",
                "'user=alice&password=hunter2'",
            ),
            ("it's", r"'it'\''s'"),
            ("", "''"),
        ];
        for (word, quoted) in rows {
            assert_eq!(shell_quote(word), quoted, "{word}");
        }
    }

    #[test]
    fn lessons_come_in_the_issue_order() {
        let text = lessons(&info());
        let commands: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  $ "))
            .collect();
        let expect = [
            "curl -x http://127.0.0.1:8080 -i http://hsts.lab.test:1001/",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -i https://hsts.lab.test:1001/",
            "cat /tmp/lab/hsts.json",
            "curl -x http://127.0.0.1:8080 -i http://hsts.lab.test:1001/",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -L http://hsts.lab.test:1001/",
            "curl -x http://127.0.0.1:8080 -i http://plain.lab.test:1002/",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -L -d 'user=alice&password=hunter2' https://shop.lab.test:1003/login-302",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -L -d 'user=alice&password=hunter2' https://shop.lab.test:1003/login-307",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -L -d 'user=alice&password=hunter2' https://shop.lab.test:1003/login-307-away",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -L -d 'user=alice&password=hunter2' https://shop.lab.test:1003/login-303-away",
            "curl -x http://127.0.0.1:40001 --cacert '/tmp/my certs/ca.pem' -i -L -d 'user=alice&password=hunter2' https://shop.lab.test:1003/login-302",
            "grep -h '\"kind\"' /tmp/lab/traffic.jsonl /tmp/lab/traffic-rewrite.jsonl",
            "/usr/bin/strictproxy report /tmp/lab/traffic.jsonl",
        ];
        assert_eq!(commands, expect);
        // Every command is followed by what to look for (except the grep's own line).
        assert!(text.contains("Lesson 6"));
    }

    #[test]
    fn fallback_and_admin_are_said() {
        let mut info = info();
        info.fallback_from = Some("127.0.0.1:8080".parse().unwrap());
        info.proxy = "127.0.0.1:45555".parse().unwrap();
        info.admin = Some("127.0.0.1:8081".parse().unwrap());
        let text = lessons(&info);
        assert!(text.contains("127.0.0.1:8080 is already in use"), "{text}");
        assert!(text.contains("curl -x http://127.0.0.1:45555 "), "{text}");
        assert!(text.contains("$ curl --noproxy '*' http://127.0.0.1:8081/hsts/hsts.lab.test"));
        assert!(
            text.contains("web console      http://127.0.0.1:8081/"),
            "{text}"
        );
    }

    #[test]
    fn origin_routes() {
        let ports = Ports {
            hsts: 1,
            plain: 2,
            shop: 3,
            evil: 4,
        };
        // The shop's login routes: (method, path, expected status, expected Location).
        let rows = [
            (Method::POST, "/login-302", 302, Some("/welcome")),
            (Method::POST, "/login-307", 307, Some("/welcome")),
            (
                Method::POST,
                "/login-307-away",
                307,
                Some("https://evil.lab.test:4/collect"),
            ),
            (
                Method::POST,
                "/login-303-away",
                303,
                Some("https://evil.lab.test:4/collect"),
            ),
            (Method::GET, "/welcome", 200, None),
            (Method::POST, "/welcome", 200, None),
            (Method::GET, "/nowhere", 404, None),
        ];
        for (method, path, status, location) in rows {
            let response = route(Site::Shop, "https", ports, &method, path, b"", false);
            assert_eq!(response.status().as_u16(), status, "{method} {path}");
            assert_eq!(
                response
                    .headers()
                    .get(LOCATION)
                    .map(|v| v.to_str().unwrap()),
                location,
                "{method} {path}"
            );
        }
        // The HSTS site sends STS on both transports (lesson 1 shows the plain one ignored).
        for scheme in ["http", "https"] {
            let response = route(Site::Hsts, scheme, ports, &Method::GET, "/", b"", false);
            assert_eq!(response.headers()[STRICT_TRANSPORT_SECURITY], STS_VALUE);
        }
        assert_eq!(
            received(SHOP_HOST, &Method::POST, "/welcome", LOGIN_FORM.as_bytes()),
            "shop.lab.test /welcome received: POST, 27 body bytes: user=alice&password=hunter2"
        );
        assert_eq!(
            received(EVIL_HOST, &Method::GET, "/collect", b""),
            "evil.lab.test /collect received: GET, no body"
        );
    }
}
