//! strictproxy-loadgen: the load client of bench/run.sh, for what wrk cannot do (HTTPS through
//! CONNECT, new TLS connections per second, thousands of idle keep-alive connections).
//!
//! Subcommands (each load mode prints one `RESULT key=value …` line on stdout):
//! - `keepalive --url URL --conns N --secs T [--proxy ADDR | --connect ADDR] [--ca PEM]…`:
//!   N keep-alive connections send GETs back to back for T seconds.
//! - `newconn --url URL --conns N --secs T … [--hosts K --host-pattern 'h{}.bench.test'
//!   --host-offset O] [--resume]`: N workers each loop over TCP connect (+ CONNECT) + TLS
//!   handshake + one GET + close. With `--hosts`, connection i uses the name
//!   `pattern(O + i mod K)` (SNI and CONNECT authority). Without `--resume` every handshake is
//!   a full one (no client session cache); with it, each worker keeps its own session cache,
//!   as N separate clients would (one shared cache holds only 8 TLS 1.3 tickets per server
//!   name, too few for 50 concurrent connections), and `resumed=` counts resumed handshakes.
//! - `idle --url URL --conns N --secs T …`: opens N keep-alive connections (200 at a time),
//!   sends one GET on each, prints `READY …`, holds them T seconds, then prints `RESULT`.
//!   With an https:// URL through `--proxy`, each is a CONNECT tunnel with TLS inside.
//! - `h2 --url https://… --conns N --streams S --secs T …`: N HTTP/2 connections (TLS, ALPN
//!   `h2`, through CONNECT with `--proxy`), each keeping S streams busy with GETs for T
//!   seconds (see [`h2load`]). The RESULT line adds `alpn=h2` and the server's stream limit.
//! - `preload --count N --out FILE`: writes a Chromium-format preload list of N entries.
//! - `freeport`: prints a free loopback TCP port.
//!
//! It runs on a single-threaded runtime: bench/run.sh pins it to one core.
//! Nothing here resolves names: the address to connect to is always given as an IP.

mod h2load;
mod http1;

use http1::{Conn, Stream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// What to fetch, split from an `http://` or `https://` URL.
#[derive(Clone, Debug)]
struct Url {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

impl Url {
    fn parse(text: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("{text}: only http:// and https:// URLs"));
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{text}: bad port {p}"))?,
            ),
            None => (authority, if tls { 443 } else { 80 }),
        };
        Ok(Url {
            tls,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// Command-line options shared by the subcommands.
#[derive(Debug)]
struct Opts {
    url: Option<Url>,
    proxy: Option<SocketAddr>,
    connect: Option<SocketAddr>,
    conns: usize,
    secs: f64,
    ca: Vec<PathBuf>,
    hosts: usize,
    host_pattern: String,
    host_offset: usize,
    resume: bool,
    streams: usize,
    count: usize,
    out: Option<PathBuf>,
}

impl Opts {
    fn parse(args: impl Iterator<Item = String>) -> Result<Opts, String> {
        let mut opts = Opts {
            url: None,
            proxy: None,
            connect: None,
            conns: 50,
            secs: 5.0,
            ca: Vec::new(),
            hosts: 0,
            host_pattern: "h{}.bench.test".to_string(),
            host_offset: 0,
            resume: false,
            streams: 100,
            count: 150_000,
            out: None,
        };
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            if flag == "--resume" {
                opts.resume = true;
                continue;
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |what: &str| format!("{flag} {value}: not {what}");
            match flag.as_str() {
                "--url" => opts.url = Some(Url::parse(&value)?),
                "--proxy" => opts.proxy = Some(value.parse().map_err(|_| bad("an IP:port"))?),
                "--connect" => opts.connect = Some(value.parse().map_err(|_| bad("an IP:port"))?),
                "--conns" => opts.conns = value.parse().map_err(|_| bad("a count"))?,
                "--secs" => opts.secs = value.parse().map_err(|_| bad("a number"))?,
                "--ca" => opts.ca.push(PathBuf::from(value)),
                "--hosts" => opts.hosts = value.parse().map_err(|_| bad("a count"))?,
                "--host-pattern" => opts.host_pattern = value,
                "--host-offset" => opts.host_offset = value.parse().map_err(|_| bad("a count"))?,
                "--streams" => opts.streams = value.parse().map_err(|_| bad("a count"))?,
                "--count" => opts.count = value.parse().map_err(|_| bad("a count"))?,
                "--out" => opts.out = Some(PathBuf::from(value)),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        Ok(opts)
    }
}

/// Everything a worker needs to open a connection and send its request.
struct Plan {
    url: Url,
    /// Where TCP connects: the proxy, or the origin for direct runs.
    addr: SocketAddr,
    via_proxy: bool,
    tls: Option<TlsConnector>,
    hosts: usize,
    host_pattern: String,
    host_offset: usize,
    deadline: Instant,
}

/// ALPN offers: HTTP/1.1 only for the HTTP/1.1 modes; for `h2`, what browsers offer (the
/// server must pick `h2`, which [`h2load`] checks).
const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];
const ALPN_H2: &[&[u8]] = &[b"h2", b"http/1.1"];

impl Plan {
    fn new(opts: &Opts, resume: bool, alpn: &[&[u8]]) -> Result<Plan, String> {
        let url = opts.url.clone().ok_or("--url is required")?;
        let (addr, via_proxy) = match (opts.proxy, opts.connect) {
            (Some(proxy), None) => (proxy, true),
            (None, Some(direct)) => (direct, false),
            _ => return Err("give exactly one of --proxy ADDR and --connect ADDR".into()),
        };
        let tls = if url.tls {
            Some(TlsConnector::from(client_config(&opts.ca, resume, alpn)?))
        } else {
            None
        };
        Ok(Plan {
            url,
            addr,
            via_proxy,
            tls,
            hosts: opts.hosts,
            host_pattern: opts.host_pattern.clone(),
            host_offset: opts.host_offset,
            deadline: Instant::now() + Duration::from_secs_f64(opts.secs),
        })
    }

    /// The host name for connection number `i`.
    fn host(&self, i: usize) -> String {
        if self.hosts == 0 {
            self.url.host.clone()
        } else {
            self.host_pattern
                .replace("{}", &(self.host_offset + i % self.hosts).to_string())
        }
    }

    /// The request bytes for `host`: absolute-form to a proxy for http://, origin-form else.
    fn request(&self, host: &str) -> Vec<u8> {
        let authority = format!("{host}:{}", self.url.port);
        let target = if self.via_proxy && !self.url.tls {
            format!("http://{authority}{}", self.url.path)
        } else {
            self.url.path.clone()
        };
        format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: strictproxy-loadgen\r\nAccept: */*\r\n\r\n")
            .into_bytes()
    }

    /// Opens a connection ready for requests to `host`; returns whether TLS resumed.
    async fn open(&self, host: &str) -> std::io::Result<(Conn, bool)> {
        let (stream, resumed, _) = self.open_stream(host).await?;
        Ok((Conn::new(stream), resumed))
    }

    /// Opens a byte stream to `host` (TCP, CONNECT, TLS as the plan says); returns it, whether
    /// TLS resumed and the protocol the server chose by ALPN.
    async fn open_stream(
        &self,
        host: &str,
    ) -> std::io::Result<(Box<dyn Stream>, bool, Option<Vec<u8>>)> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return Ok((Box::new(tcp), false, None));
        };
        let tcp = if self.via_proxy {
            let mut conn = Conn::new(Box::new(tcp));
            conn.connect_tunnel(&format!("{host}:{}", self.url.port))
                .await?;
            conn.into_inner()
        } else {
            Box::new(tcp) as Box<dyn Stream>
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| std::io::Error::other(format!("bad server name {host}")))?;
        let stream = tls.connect(name, tcp).await?;
        let session = stream.get_ref().1;
        let resumed = matches!(
            session.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        Ok((Box::new(stream), resumed, alpn))
    }
}

/// TLS client settings trusting the given CA files only; `alpn` offered; cipher suites in
/// the order browsers offer them (AES-128-GCM first, where rustls' default puts AES-256-GCM
/// first), since the server takes the client's preference and the suite's hash (SHA-256 or
/// SHA-384) sets the cost of the TLS 1.3 key schedule.
fn client_config(
    cas: &[PathBuf],
    resume: bool,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for path in cas {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("an https:// URL needs --ca FILE".into());
    }
    let mut provider = rustls::crypto::ring::default_provider();
    let first = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.suite();
    provider.cipher_suites.sort_by_key(|s| s.suite() != first);
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if !resume {
        // Every handshake a full one: what a client meeting the host for the first time pays.
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// What one worker measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    resumed: u64,
    body_bytes: u64,
    first_error: Option<String>,
    /// More `key=value` fields for the RESULT line (the h2 mode's ALPN and stream limit).
    extra: String,
}

impl Tally {
    fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.resumed += other.resumed;
        self.body_bytes += other.body_bytes;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Prints the one parseable line, and the first error on stderr.
    fn report(mut self, mode: &str, elapsed: Duration) {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| -> u32 {
            if self.latencies_us.is_empty() {
                return 0;
            }
            let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
            self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1]
        };
        let n = self.latencies_us.len();
        println!(
            "RESULT mode={mode} requests={n} secs={:.3} rps={:.1} p50_us={} p99_us={} errors={} resumed={} body_bytes_avg={}{}",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            pct(50.0),
            pct(99.0),
            self.errors,
            self.resumed,
            self.body_bytes / (n.max(1) as u64),
            self.extra
        );
        if let Some(err) = self.first_error {
            eprintln!("loadgen: first error: {err}");
        }
    }
}

fn elapsed_us(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u32::MAX as u128) as u32
}

/// One keep-alive connection sending requests back to back until the deadline.
async fn keepalive_worker(plan: Arc<Plan>, id: usize) -> Tally {
    let mut tally = Tally::default();
    let host = plan.host(id);
    let request = plan.request(&host);
    let mut conn: Option<Conn> = None;
    while Instant::now() < plan.deadline {
        let mut current = match conn.take() {
            Some(c) => c,
            None => match plan.open(&host).await {
                Ok((c, _)) => c,
                Err(err) => {
                    tally.error(|| format!("connect: {err}"));
                    // Do not spin on a refusing server.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let start = Instant::now();
        let result = async {
            current.send(&request).await?;
            current.response(false).await
        }
        .await;
        match result {
            Ok(resp) => {
                tally.latencies_us.push(elapsed_us(start));
                tally.body_bytes += resp.body_bytes;
                if resp.status >= 400 {
                    tally.error(|| format!("status {}", resp.status));
                }
                if !resp.close {
                    conn = Some(current);
                }
            }
            Err(err) => tally.error(|| format!("request: {err}")),
        }
    }
    tally
}

/// One worker opening a new connection for each request; `own_tls` replaces the shared TLS
/// settings (a session cache of the worker's own).
async fn newconn_worker(
    plan: Arc<Plan>,
    id: usize,
    workers: usize,
    own_tls: Option<TlsConnector>,
) -> Tally {
    let mut tally = Tally::default();
    let plan = match own_tls {
        Some(tls) => Arc::new(Plan {
            url: plan.url.clone(),
            addr: plan.addr,
            via_proxy: plan.via_proxy,
            tls: Some(tls),
            hosts: plan.hosts,
            host_pattern: plan.host_pattern.clone(),
            host_offset: plan.host_offset,
            deadline: plan.deadline,
        }),
        None => plan,
    };
    let mut i = id;
    while Instant::now() < plan.deadline {
        let host = plan.host(i);
        i += workers;
        let start = Instant::now();
        let result = async {
            let (mut conn, resumed) = plan.open(&host).await?;
            conn.send(&plan.request(&host)).await?;
            let resp = conn.response(false).await?;
            Ok::<_, std::io::Error>((conn, resp, resumed))
        }
        .await;
        match result {
            Ok((conn, resp, resumed)) => {
                tally.latencies_us.push(elapsed_us(start));
                tally.resumed += u64::from(resumed);
                tally.body_bytes += resp.body_bytes;
                if resp.status >= 400 {
                    tally.error(|| format!("status {}", resp.status));
                }
                // close_notify and FIN, as a polite client ends a connection.
                let mut io = conn.into_inner();
                let _ = io.shutdown().await;
            }
            Err(err) => tally.error(|| format!("{host}: {err}")),
        }
    }
    tally
}

async fn run_load(opts: Opts, mode: &str) -> Result<(), String> {
    let plan = Arc::new(Plan::new(&opts, opts.resume, ALPN_HTTP1)?);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(opts.conns);
    for id in 0..opts.conns {
        let plan = plan.clone();
        tasks.push(match mode {
            "keepalive" => tokio::spawn(keepalive_worker(plan, id)),
            _ => {
                let own_tls = match (opts.resume, plan.url.tls) {
                    (true, true) => Some(TlsConnector::from(client_config(
                        &opts.ca, true, ALPN_HTTP1,
                    )?)),
                    _ => None,
                };
                tokio::spawn(newconn_worker(plan, id, opts.conns, own_tls))
            }
        });
    }
    let mut total = Tally::default();
    for task in tasks {
        total.merge(task.await.map_err(|e| e.to_string())?);
    }
    total.report(mode, start.elapsed());
    Ok(())
}

/// Opens `conns` keep-alive connections with one request each and holds them.
async fn run_idle(opts: Opts) -> Result<(), String> {
    let plan = Arc::new(Plan::new(&opts, false, ALPN_HTTP1)?);
    let start = Instant::now();
    let open_one = |plan: Arc<Plan>, id: usize| async move {
        let host = plan.host(id);
        let (mut conn, _) = plan.open(&host).await?;
        let started = Instant::now();
        conn.send(&plan.request(&host)).await?;
        let resp = conn.response(false).await?;
        if resp.status >= 400 || resp.close {
            return Err(std::io::Error::other(format!(
                "status {}, close {}",
                resp.status, resp.close
            )));
        }
        Ok::<_, std::io::Error>((conn, elapsed_us(started)))
    };
    let mut held = Vec::with_capacity(opts.conns);
    let mut tally = Tally::default();
    // 200 at a time: a burst of 10,000 SYNs would overflow the listen backlog.
    for batch in (0..opts.conns).collect::<Vec<_>>().chunks(200) {
        let tasks: Vec<_> = batch
            .iter()
            .map(|&id| tokio::spawn(open_one(plan.clone(), id)))
            .collect();
        for task in tasks {
            match task.await.map_err(|e| e.to_string())? {
                Ok((conn, us)) => {
                    held.push(conn);
                    tally.latencies_us.push(us);
                }
                Err(err) => tally.error(|| err.to_string()),
            }
        }
    }
    let opened = start.elapsed();
    println!(
        "READY held={} errors={} secs={:.3}",
        held.len(),
        tally.errors,
        opened.as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    tokio::time::sleep(Duration::from_secs_f64(opts.secs)).await;
    tally.report("idle", opened);
    drop(held);
    Ok(())
}

/// Writes a Chromium-format preload list: `site{i}.example`, include_subdomains on even i,
/// every tenth entry pins-only (no force-https), with `//` comment lines as the real file has.
fn write_preload(opts: &Opts) -> Result<(), String> {
    let path = opts.out.clone().ok_or("--out FILE is required")?;
    let mut text = String::with_capacity(opts.count * 110);
    text.push_str("// Synthetic HSTS preload list for bench/run.sh.\n{\n  \"pinsets\": [],\n  \"entries\": [\n");
    for i in 0..opts.count {
        if i % 1000 == 0 {
            text.push_str(&format!("    // Block {}.\n", i / 1000));
        }
        let sep = if i + 1 == opts.count { "" } else { "," };
        if i % 10 == 9 {
            text.push_str(&format!(
                "    {{ \"name\": \"pins{i}.example\", \"include_subdomains\": true, \"pins\": \"test\" }}{sep}\n"
            ));
        } else {
            text.push_str(&format!(
                "    {{ \"name\": \"site{i}.example\", \"policy\": \"bulk-1-year\", \"mode\": \"force-https\", \"include_subdomains\": {} }}{sep}\n",
                i % 2 == 0
            ));
        }
    }
    text.push_str("  ]\n}\n");
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(command) = args.next() else {
        eprintln!("usage: strictproxy-loadgen keepalive|newconn|idle|h2|preload|freeport [options] (see the source's header)");
        return ExitCode::from(2);
    };
    let opts = match Opts::parse(args) {
        Ok(opts) => opts,
        Err(err) => {
            eprintln!("loadgen: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("loadgen: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command.as_str() {
        "keepalive" | "newconn" => runtime.block_on(run_load(opts, &command)),
        "idle" => runtime.block_on(run_idle(opts)),
        "h2" => runtime.block_on(h2load::run(opts)),
        "preload" => write_preload(&opts),
        "freeport" => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| println!("{}", a.port()))
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown subcommand {other}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("loadgen: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_host_port_path() {
        let u = Url::parse("https://bench.test:8443/100b").unwrap();
        assert!(u.tls);
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("bench.test", 8443, "/100b")
        );
        let u = Url::parse("http://site0.example").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert!(Url::parse("ftp://x/").is_err());
    }

    #[test]
    fn requests_use_absolute_form_only_for_plain_http_through_a_proxy() {
        let opts = |proxy: bool, url: &str| Opts {
            url: Some(Url::parse(url).unwrap()),
            proxy: proxy.then(|| "127.0.0.1:1".parse().unwrap()),
            connect: (!proxy).then(|| "127.0.0.1:2".parse().unwrap()),
            ..Opts::parse(std::iter::empty()).unwrap()
        };
        let plan = Plan::new(&opts(true, "http://bench.test:81/x"), false, ALPN_HTTP1).unwrap();
        assert!(String::from_utf8(plan.request("bench.test"))
            .unwrap()
            .starts_with("GET http://bench.test:81/x HTTP/1.1\r\nHost: bench.test:81\r\n"));
        let plan = Plan::new(&opts(false, "http://bench.test:81/x"), false, ALPN_HTTP1).unwrap();
        assert!(String::from_utf8(plan.request("bench.test"))
            .unwrap()
            .starts_with("GET /x HTTP/1.1\r\n"));
    }

    #[test]
    fn distinct_hosts_follow_the_pattern_and_offset() {
        let mut opts = Opts::parse(
            [
                "--url",
                "http://bench.test:1/",
                "--connect",
                "127.0.0.1:1",
                "--hosts",
                "3",
                "--host-offset",
                "10",
            ]
            .into_iter()
            .map(String::from),
        )
        .unwrap();
        opts.host_pattern = "h{}.bench.test".into();
        let plan = Plan::new(&opts, false, ALPN_HTTP1).unwrap();
        let names: Vec<String> = (0..4).map(|i| plan.host(i)).collect();
        assert_eq!(
            names,
            [
                "h10.bench.test",
                "h11.bench.test",
                "h12.bench.test",
                "h10.bench.test"
            ]
        );
    }
}
