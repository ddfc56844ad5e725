//! Shared test harness: a test CA made by the test itself, real origin servers on 127.0.0.1
//! (plain HTTP and HTTPS, with routes that echo, redirect, send STS, stream and speak
//! WebSocket), the real proxy started in-process on an ephemeral port, and a real HTTP client
//! (reqwest) set to use it. Nothing here reaches beyond loopback.

#![allow(dead_code)]

pub mod hostile;
pub mod lab_process;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use strictproxy::config::{Config, Overrides};
use strictproxy::server::RunningProxy;
use tokio::net::TcpListener;

/// Names the test CA's origin certificate covers; the proxy maps them to 127.0.0.1.
pub const ORIGIN_NAMES: [&str; 6] = [
    "origin.test",
    "secure.test",
    "sub.secure.test",
    "deep.sub.secure.test",
    "other.test",
    "plain.test",
];

/// A CA made for one test run, and an origin certificate it signed.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub ca_pem_path: PathBuf,
    pub ca_pem: String,
    pub cert_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub key_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        Self::with_names(&ORIGIN_NAMES)
    }

    pub fn with_names(names: &[&str]) -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "strictproxy test origin CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();

        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        names.push("localhost".into());
        let mut leaf_params = rcgen::CertificateParams::new(names).unwrap();
        leaf_params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_pem_path = dir.path().join("origin-ca.pem");
        std::fs::write(&ca_pem_path, ca_cert.pem()).unwrap();
        TestCa {
            ca_pem: ca_cert.pem(),
            ca_pem_path,
            cert_chain: vec![leaf.der().clone(), ca_cert.der().clone()],
            key_der: leaf_key.serialize_der(),
            dir,
        }
    }

    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(self.cert_chain.clone(), key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// What an origin saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub host: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub version: http::Version,
}

/// A running origin server.
pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Origin {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }

    /// A plain-HTTP origin on 127.0.0.1.
    pub async fn http() -> Origin {
        Self::start(None).await
    }

    /// An HTTPS origin on 127.0.0.1 with a certificate from `ca`, offering h2 and http/1.1.
    pub async fn https(ca: &TestCa) -> Origin {
        Self::start(Some(ca.server_config(&[b"h2", b"http/1.1"]))).await
    }

    /// An HTTPS origin that speaks only HTTP/1.1.
    pub async fn https_h1(ca: &TestCa) -> Origin {
        Self::start(Some(ca.server_config(&[b"http/1.1"]))).await
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                let seen = seen2.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| route(seen.clone(), req));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Origin { addr, seen }
    }
}

type OriginBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> OriginBody {
    Full::new(bytes.into()).boxed()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The origin's routes:
/// - `/status/{code}?location=URL` — that status, with Location when given
/// - `/cycle/{i}/{k}` — 302 to `/cycle/{i+1 mod k}/{k}` (a redirect loop)
/// - `/sts?v=VALUE` — 200 with `Strict-Transport-Security: VALUE` (twice with `&v2=`)
/// - `/big/{n}` — n bytes, streamed in 64 KiB chunks
/// - `/sink` — counts an uploaded body without keeping it
/// - `/ws` — WebSocket echo
/// - anything else — 200 echoing method, path and body length as text
async fn route(
    seen: Arc<Mutex<Vec<Seen>>>,
    mut req: Request<Incoming>,
) -> Result<Response<OriginBody>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = req.method().to_string();
    // What the origin saw; the body is filled in by the routes that keep it.
    let mut entry = Seen {
        method: method.clone(),
        path: path.clone(),
        host,
        headers,
        body: Vec::new(),
        version: req.version(),
    };

    if path == "/ws" {
        let response = websocket_echo(&mut req);
        seen.lock().unwrap().push(entry);
        return Ok(response);
    }

    if path == "/sink" {
        // Counts an upload frame by frame without keeping it (for the streaming tests).
        let mut body = req.into_body();
        let mut total = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                total += data.len() as u64;
            }
        }
        seen.lock().unwrap().push(entry);
        return Ok(Response::new(full(format!("received {total}\n"))));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    entry.body = body.to_vec();
    seen.lock().unwrap().push(entry);

    if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap_or(500);
        let mut response = Response::new(full(format!("status {code}\n")));
        *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        if let Some(location) = query_param(query.as_deref(), "location") {
            response
                .headers_mut()
                .insert("location", location.parse().unwrap());
        }
        return Ok(response);
    }
    if let Some(rest) = path.strip_prefix("/cycle/") {
        // `/cycle/{i}/{k}` redirects to `/cycle/{i+1 mod k}/{k}`: a redirect loop of length k.
        let mut parts = rest.split('/');
        let i: u32 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let k: u32 = parts
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2)
            .max(1);
        let mut response = Response::new(full("cycle\n"));
        *response.status_mut() = StatusCode::FOUND;
        response.headers_mut().insert(
            "location",
            format!("/cycle/{}/{k}", (i + 1) % k).parse().unwrap(),
        );
        return Ok(response);
    }
    if path == "/sts" {
        let mut response = Response::new(full("sts\n"));
        if let Some(value) = query_param(query.as_deref(), "v") {
            response
                .headers_mut()
                .append("strict-transport-security", value.parse().unwrap());
        }
        if let Some(value) = query_param(query.as_deref(), "v2") {
            response
                .headers_mut()
                .append("strict-transport-security", value.parse().unwrap());
        }
        return Ok(response);
    }
    if let Some(n) = path.strip_prefix("/big/") {
        let total: usize = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = total / chunk.len();
        let rest = total % chunk.len();
        let stream = futures_util::stream::iter(
            (0..chunks)
                .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())))
                .chain(std::iter::once(Ok(Frame::data(Bytes::from(vec![
                    b'x';
                    rest
                ]))))),
        );
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        response
            .headers_mut()
            .insert("content-length", total.to_string().parse().unwrap());
        return Ok(response);
    }
    Ok(Response::new(full(format!(
        "{method} {path} {}\n",
        body.len()
    ))))
}

fn websocket_echo(req: &mut Request<Incoming>) -> Response<OriginBody> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()))
        .unwrap_or_default();
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            let (mut tx, mut rx) = ws.split();
            while let Some(Ok(msg)) = rx.next().await {
                if (msg.is_text() || msg.is_binary()) && tx.send(msg).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("upgrade", "websocket".parse().unwrap());
    headers.insert("connection", "upgrade".parse().unwrap());
    headers.insert("sec-websocket-accept", key.parse().unwrap());
    response
}

/// A proxy under test, with its own CA folder and traffic log.
pub struct TestProxy {
    pub proxy: RunningProxy,
    pub dir: tempfile::TempDir,
    pub traffic_log: PathBuf,
}

impl TestProxy {
    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.proxy.ca_path()).unwrap()
    }

    /// A reqwest client that uses the proxy, trusts its CA, and does not follow redirects.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    /// A GET through the proxy with a fresh [`TestProxy::client`].
    pub async fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::Response {
        self.client().get(url).send().await.unwrap()
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{}", self.addr())).unwrap())
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem()).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(20))
    }

    /// The traffic log's records so far (after a flush).
    pub async fn records(&self) -> Vec<serde_json::Value> {
        self.proxy.flush().await;
        let text = std::fs::read_to_string(&self.traffic_log).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("every traffic log line is JSON"))
            .collect()
    }
}

/// Overrides for a test proxy: ephemeral port, the test CA trusted upstream, every test name
/// resolved to 127.0.0.1.
pub fn overrides(dir: &std::path::Path, ca: Option<&TestCa>) -> Overrides {
    Overrides {
        listen: Some("127.0.0.1:0".into()),
        admin: Some("127.0.0.1:0".into()),
        ca_dir: Some(dir.join("ca")),
        upstream_ca: ca
            .map(|ca| vec![ca.ca_pem_path.clone()])
            .unwrap_or_default(),
        resolve: ORIGIN_NAMES
            .iter()
            .map(|name| format!("{name}=127.0.0.1"))
            .collect(),
        traffic_log: Some(dir.join("traffic.jsonl")),
        ..Default::default()
    }
}

/// Starts a proxy with the default test overrides, adjusted by `tweak`.
pub async fn start_proxy(ca: Option<&TestCa>, tweak: impl FnOnce(&mut Overrides)) -> TestProxy {
    let dir = tempfile::tempdir().unwrap();
    let mut o = overrides(dir.path(), ca);
    tweak(&mut o);
    start_proxy_in(dir, o).await
}

pub async fn start_proxy_in(dir: tempfile::TempDir, o: Overrides) -> TestProxy {
    let traffic_log = o
        .traffic_log
        .clone()
        .unwrap_or_else(|| dir.path().join("traffic.jsonl"));
    let config = Config::load(None, &o).unwrap();
    let proxy = strictproxy::server::start(config).await.unwrap();
    TestProxy {
        proxy,
        dir,
        traffic_log,
    }
}

/// Sends raw bytes to `addr` and returns the first response as text (see [`read_response`]).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    String::from_utf8_lossy(&read_response(&mut stream).await).into_owned()
}

/// The finding kinds of one traffic-log record, in order.
pub fn finding_kinds(record: &serde_json::Value) -> Vec<String> {
    record["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.1 response from `stream` as raw bytes: the head, and the body as far as
/// Content-Length says (or until the peer closes). At most 10 s.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(end) = find(&out, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(length) = length {
                if out.len() >= end + 4 + length {
                    out.truncate(end + 4 + length);
                    return out;
                }
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads a response head byte by byte, so nothing after it (a tunnel, a WebSocket) is consumed.
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert_eq!(
            n,
            1,
            "closed in the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Opens a CONNECT tunnel through the proxy at `proxy` and returns the stream after its `200`.
pub async fn open_tunnel(proxy: SocketAddr, authority: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream.write_all(connect.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

/// A TLS client config that trusts only the proxy's CA, with SNI on or off and the given ALPN.
pub fn trusting_proxy(proxy: &TestProxy, sni: bool, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&proxy.ca_pem()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.enable_sni = sni;
    Arc::new(config)
}
