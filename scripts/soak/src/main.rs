//! The soak driver behind scripts/soak.sh. Three subcommands:
//!
//! - `origins DIR`: generates a CA and a leaf for the `*.soak.test` names, writes the CA to
//!   `DIR/origin-ca.pem`, starts a plain-HTTP origin, an HTTPS origin (h2 and http/1.1), an
//!   origin that resets every connection and a port nobody listens on, writes their ports to
//!   `DIR/ports.json`, and serves until killed.
//! - `load key=value…`: `clients` concurrent clients, each with its own connections (as 200
//!   separate programs would have), send a fixed mix of plain, intercepted, tunnelled,
//!   redirecting, HSTS, slow and failing requests through the proxy for `seconds`. Every answer
//!   is checked against what that kind must get; anything else is an unintended error. Prints
//!   one JSON summary line, with the number of traffic-log lines the proxy owes.
//! - `check-log FILE`: counts the traffic log's lines, checks each is a JSON object with the
//!   contract's fields, and prints a JSON summary.
//!
//! Everything is on 127.0.0.1: the proxy maps the names with `--resolve`.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The names the origin certificate covers; the proxy resolves them all to 127.0.0.1.
const NAMES: [&str; 4] = [
    "plain.soak.test",
    "secure.soak.test",
    "tunnel.soak.test",
    "hsts.soak.test",
];

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("origins") if args.len() == 2 => origins(PathBuf::from(&args[1])).await,
        Some("load") => load(&args[1..]).await,
        Some("check-log") if args.len() == 2 => check_log(Path::new(&args[1])),
        _ => Err("usage: strictproxy-soak origins DIR | load key=value... | check-log FILE".into()),
    };
    if let Err(err) = result {
        eprintln!("strictproxy-soak: {err}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Origins
// ---------------------------------------------------------------------------------------------

async fn origins(dir: PathBuf) -> Result<(), Error> {
    std::fs::create_dir_all(&dir)?;
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "strictproxy soak origin CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf_params =
        rcgen::CertificateParams::new(NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;
    std::fs::write(dir.join("origin-ca.pem"), ca.pem())?;

    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = Arc::new(tls);

    let http = TcpListener::bind("127.0.0.1:0").await?;
    let https = TcpListener::bind("127.0.0.1:0").await?;
    let reset = TcpListener::bind("127.0.0.1:0").await?;
    // A port that was free a moment ago and has no listener: connections to it are refused.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let ports = json!({
        "http": http.local_addr()?.port(),
        "https": https.local_addr()?.port(),
        "reset": reset.local_addr()?.port(),
        "refused": refused,
    });
    // Written whole, then renamed: the script polls for the file.
    let tmp = dir.join("ports.json.tmp");
    std::fs::write(&tmp, ports.to_string())?;
    std::fs::rename(&tmp, dir.join("ports.json"))?;

    tokio::spawn(serve(http, None));
    tokio::spawn(serve(https, Some(tls)));
    tokio::spawn(async move {
        // Accepts and drops at once: the proxy sees a connection closed before any answer.
        while let Ok((stream, _)) = reset.accept().await {
            drop(stream);
        }
    });
    std::future::pending::<()>().await;
    Ok(())
}

async fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(config) => {
                    if let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                    {
                        serve_connection(stream).await;
                    }
                }
                None => serve_connection(stream).await,
            }
        });
    }
}

/// How long a connection may stay silent before the origin closes it (gracefully: GOAWAY on
/// HTTP/2), as real servers do: 5 s is Apache's default `KeepAliveTimeout`. It also makes the
/// proxy's pool let go of idle upstream connections, and their descriptors, after the load.
const ORIGIN_IDLE: Duration = Duration::from_secs(5);

async fn serve_connection<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let last = Arc::new(Mutex::new(Instant::now()));
    let io = Active {
        inner: stream,
        last: last.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(io), service_fn(route));
    tokio::pin!(conn);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = tokio::time::sleep(ORIGIN_IDLE / 4) => {
                let idle = last.lock().map(|t| t.elapsed()).unwrap_or_default();
                if idle > ORIGIN_IDLE {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                    return;
                }
            }
        }
    }
}

/// A stream that records when it last read or wrote anything.
struct Active<S> {
    inner: S,
    last: Arc<Mutex<Instant>>,
}

impl<S> Active<S> {
    fn touch(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Active<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Active<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn text(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
}

/// `/` ok; `/echo` the body's length; `/redirect` 302 to `/`; `/sts` 200 with STS;
/// `/slow?ms=N` answers after N ms; `/status/N` that status.
async fn route(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let response = match path.as_str() {
        "/echo" => text(200, format!("{}\n", body.len())),
        "/redirect" => {
            let mut r = text(302, "moved\n");
            r.headers_mut()
                .insert("location", http::HeaderValue::from_static("/"));
            r
        }
        "/sts" => {
            let mut r = text(200, "sts\n");
            r.headers_mut().insert(
                "strict-transport-security",
                http::HeaderValue::from_static("max-age=600"),
            );
            r
        }
        "/slow" => {
            let ms: u64 = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(200, "slow\n")
        }
        p if p.starts_with("/status/") => text(p[8..].parse().unwrap_or(500), "status\n"),
        _ => text(200, "ok\n"),
    };
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Kind {
    Plain,
    PlainPost,
    Intercepted,
    InterceptedPost,
    Tunnelled,
    Redirect,
    HstsLearn,
    HstsPlain,
    Slow,
    Refused,
    Reset,
    Status500,
}

/// The mix every client cycles through (each starting at its own offset).
const MIX: [Kind; 16] = [
    Kind::Plain,
    Kind::Intercepted,
    Kind::PlainPost,
    Kind::Tunnelled,
    Kind::InterceptedPost,
    Kind::Redirect,
    Kind::Plain,
    Kind::HstsLearn,
    Kind::Intercepted,
    Kind::HstsPlain,
    Kind::Slow,
    Kind::Refused,
    Kind::Plain,
    Kind::Reset,
    Kind::Intercepted,
    Kind::Status500,
];

struct Settings {
    proxy: String,
    proxy_ca: PathBuf,
    origin_ca: PathBuf,
    ports: Value,
    clients: usize,
    seconds: u64,
    slow_ms: u64,
}

fn settings(args: &[String]) -> Result<Settings, Error> {
    let mut map = BTreeMap::new();
    for arg in args {
        let (k, v) = arg
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, got {arg}"))?;
        map.insert(k.to_string(), v.to_string());
    }
    let get = |k: &str| -> Result<String, Error> {
        map.get(k)
            .cloned()
            .ok_or_else(|| format!("missing {k}=").into())
    };
    let ports: Value = serde_json::from_str(&std::fs::read_to_string(get("ports")?)?)?;
    Ok(Settings {
        proxy: get("proxy")?,
        proxy_ca: get("proxy_ca")?.into(),
        origin_ca: get("origin_ca")?.into(),
        ports,
        clients: get("clients")?.parse()?,
        seconds: get("seconds")?.parse()?,
        slow_ms: map.get("slow_ms").map_or(Ok(1500), |v| v.parse())?,
    })
}

#[derive(Default)]
struct Tally {
    requests: u64,
    /// Lines the traffic log must hold: one per request through the proxy, one per tunnel.
    log_lines: u64,
    unintended: u64,
    samples: Vec<String>,
    by_kind: BTreeMap<String, u64>,
    latencies_ms: Vec<u32>,
}

async fn load(args: &[String]) -> Result<(), Error> {
    let s = Arc::new(settings(args)?);
    let proxy_ca = reqwest::Certificate::from_pem(&std::fs::read(&s.proxy_ca)?)?;
    let origin_ca = reqwest::Certificate::from_pem(&std::fs::read(&s.origin_ca)?)?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs(s.seconds);
    let started = Instant::now();

    let mut tasks = Vec::new();
    for client_id in 0..s.clients {
        // One client per task, with its own pool: 200 programs, not one program with 200 tasks.
        let through_proxy = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{}", s.proxy))?)
            .add_root_certificate(proxy_ca.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        // Passthrough: the origin's own certificate, and one tunnel per request (no pooling),
        // so each request is one CONNECT and one `tunnel` line in the log.
        let tunnelled = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{}", s.proxy))?)
            .add_root_certificate(origin_ca.clone())
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()?;
        let s = s.clone();
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            let mut step = client_id;
            while Instant::now() < deadline {
                let kind = MIX[step % MIX.len()];
                step += 1;
                let began = Instant::now();
                let outcome = one(&s, kind, &through_proxy, &tunnelled).await;
                let ms = began.elapsed().as_millis() as u32;
                let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                t.requests += 1;
                t.log_lines += 1;
                t.latencies_ms.push(ms);
                *t.by_kind.entry(format!("{kind:?}")).or_default() += 1;
                if let Err(why) = outcome {
                    t.unintended += 1;
                    if t.samples.len() < 10 {
                        t.samples.push(format!("{kind:?}: {why}"));
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
    t.latencies_ms.sort_unstable();
    let pct = |p: f64| -> u32 {
        if t.latencies_ms.is_empty() {
            return 0;
        }
        let i = ((t.latencies_ms.len() as f64 - 1.0) * p).round() as usize;
        t.latencies_ms[i]
    };
    let summary = json!({
        "clients": s.clients,
        "seconds": elapsed,
        "requests": t.requests,
        "per_second": t.requests as f64 / elapsed,
        "expected_log_lines": t.log_lines,
        "unintended": t.unintended,
        "samples": t.samples,
        "by_kind": t.by_kind,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    });
    println!("{summary}");
    Ok(())
}

fn port(s: &Settings, name: &str) -> u64 {
    s.ports[name].as_u64().unwrap_or(0)
}

/// Sends one request of `kind` and checks the answer that kind must get.
async fn one(
    s: &Settings,
    kind: Kind,
    proxied: &reqwest::Client,
    tunnelled: &reqwest::Client,
) -> Result<(), String> {
    let http = port(s, "http");
    let https = port(s, "https");
    let (request, allowed): (reqwest::RequestBuilder, &[u16]) = match kind {
        Kind::Plain => (
            proxied.get(format!("http://plain.soak.test:{http}/")),
            &[200],
        ),
        Kind::PlainPost => (
            proxied
                .post(format!("http://plain.soak.test:{http}/echo"))
                .body(vec![b'p'; 4096]),
            &[200],
        ),
        Kind::Intercepted => (
            proxied.get(format!("https://secure.soak.test:{https}/")),
            &[200],
        ),
        Kind::InterceptedPost => (
            proxied
                .post(format!("https://secure.soak.test:{https}/echo"))
                .body(vec![b's'; 4096]),
            &[200],
        ),
        Kind::Tunnelled => (
            tunnelled.get(format!("https://tunnel.soak.test:{https}/")),
            &[200],
        ),
        // A 302 answering a POST: reported (method_change_risk), passed on as it is.
        Kind::Redirect => (
            proxied
                .post(format!("http://plain.soak.test:{http}/redirect"))
                .body("form=1"),
            &[302],
        ),
        Kind::HstsLearn => (
            proxied.get(format!("https://hsts.soak.test:{https}/sts")),
            &[200],
        ),
        // 200 until the proxy has learned hsts.soak.test from a secure answer, then 307.
        Kind::HstsPlain => (
            proxied.get(format!("http://hsts.soak.test:{http}/")),
            &[200, 307],
        ),
        Kind::Slow => (
            proxied.get(format!(
                "http://plain.soak.test:{http}/slow?ms={}",
                s.slow_ms
            )),
            &[200],
        ),
        Kind::Refused => (
            proxied.get(format!("http://plain.soak.test:{}/", port(s, "refused"))),
            &[502],
        ),
        Kind::Reset => (
            proxied.get(format!("http://plain.soak.test:{}/", port(s, "reset"))),
            &[502],
        ),
        Kind::Status500 => (
            proxied.get(format!("http://plain.soak.test:{http}/status/500")),
            &[500],
        ),
    };
    let response = request.send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let via = response.headers().contains_key("via");
    let body = response.bytes().await.map_err(|e| format!("body: {e:?}"))?;
    if !allowed.contains(&status) {
        return Err(format!(
            "status {status}, expected {allowed:?}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    match kind {
        Kind::PlainPost | Kind::InterceptedPost if &body[..] != b"4096\n" => {
            Err(format!("echo said {:?}", String::from_utf8_lossy(&body)))
        }
        Kind::Tunnelled if via => Err("a blind tunnel added Via".into()),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic log check
// ---------------------------------------------------------------------------------------------

fn check_log(path: &Path) -> Result<(), Error> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = 0u64;
    let mut malformed = 0u64;
    let mut by_action: BTreeMap<String, u64> = BTreeMap::new();
    let mut findings: BTreeMap<String, u64> = BTreeMap::new();
    const FIELDS: [&str; 10] = [
        "ts",
        "client",
        "method",
        "url",
        "status",
        "duration_ms",
        "request_bytes",
        "response_bytes",
        "action",
        "findings",
    ];
    for line in text.lines() {
        lines += 1;
        match serde_json::from_str::<Value>(line) {
            Ok(record) if FIELDS.iter().all(|f| record.get(f).is_some()) => {
                let action = record["action"].as_str().unwrap_or("?").to_string();
                *by_action.entry(action).or_default() += 1;
                for f in record["findings"].as_array().into_iter().flatten() {
                    let kind = f["kind"].as_str().unwrap_or("?").to_string();
                    *findings.entry(kind).or_default() += 1;
                }
            }
            _ => malformed += 1,
        }
    }
    println!(
        "{}",
        json!({"lines": lines, "malformed": malformed, "by_action": by_action, "findings": findings})
    );
    Ok(())
}
