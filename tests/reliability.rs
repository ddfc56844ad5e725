//! Reliability and security of the proxy over real sockets (issue 5, points 1–4): bad input
//! gets a clear answer and breaks nothing else, every limit and timeout holds, loops are
//! refused, and credentials are required when configured. Each test drives the in-process
//! proxy with raw bytes or a real client, against origins on 127.0.0.1; nothing leaves loopback.
//!
//! Where the bytes themselves matter (non-UTF-8 fields, hostile STS and Location values) the
//! origin is a raw one written here, so the test sees exactly what crossed the wire.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strictproxy::config::{Config, Overrides};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Starts a proxy whose configuration file holds `toml` (for the keys `Overrides` lacks: limits
/// and timeouts), with the usual test overrides on top.
async fn start_with_toml(
    ca: Option<&TestCa>,
    toml: &str,
    tweak: impl FnOnce(&mut Overrides),
) -> TestProxy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strictproxy.toml");
    std::fs::write(&path, toml).unwrap();
    let mut o = overrides(dir.path(), ca);
    tweak(&mut o);
    let traffic_log = o.traffic_log.clone().unwrap();
    let config = Config::load(Some(&path), &o).unwrap();
    let proxy = strictproxy::server::start(config).await.unwrap();
    TestProxy {
        proxy,
        dir,
        traffic_log,
    }
}

/// Sends `request` on a new connection to `addr` and returns the raw response.
async fn exchange_bytes(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_response(&mut stream).await
}

/// Waits until the peer closes `stream` (EOF or reset); returns whatever it sent before.
async fn read_until_closed<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// An origin that answers with exact bytes: `answer(path)` gives the whole response, which
/// ends with `Connection: close`. It keeps the raw head of every request it receives.
struct RawOrigin {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RawOrigin {
    async fn start(
        tls: Option<Arc<rustls::ServerConfig>>,
        answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
    ) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let heads2 = heads.clone();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let heads = heads2.clone();
                let answer = answer.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(config) => {
                            if let Ok(tls) =
                                tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                            {
                                serve_raw(tls, heads, answer).await;
                            }
                        }
                        None => serve_raw(stream, heads, answer).await,
                    }
                });
            }
        });
        RawOrigin { addr, heads }
    }

    fn heads(&self) -> Vec<Vec<u8>> {
        self.heads.lock().unwrap().clone()
    }
}

async fn serve_raw<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    heads: Arc<Mutex<Vec<Vec<u8>>>>,
    answer: Arc<impl Fn(&str) -> Vec<u8>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while find(&head, b"\r\n\r\n").is_none() {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line_end = find(&head, b"\r\n").unwrap_or(0);
    let line = String::from_utf8_lossy(&head[..line_end]).into_owned();
    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
    heads.lock().unwrap().push(head);
    let _ = stream.write_all(&answer(&path)).await;
    let _ = stream.shutdown().await;
}

/// Joins a response head and body, with Content-Length and `Connection: close`.
fn raw_response(status_line: &str, fields: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status_line}\r\n").into_bytes();
    for field in fields {
        out.extend_from_slice(field);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn still_serves(proxy: &TestProxy) {
    let origin = Origin::http().await;
    let response = proxy
        .client()
        .get(format!("http://origin.test:{}/alive", origin.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the proxy stopped serving");
}

// ---------------------------------------------------------------------------------------------
// 1. Bad input gets a clear answer, and nothing else breaks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_request_head_over_the_limit_gets_431() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    // max_header_bytes defaults to 64 KiB: 80 KiB of one field is over it.
    let request = format!(
        "GET http://origin.test:{port}/ HTTP/1.1\r\nHost: origin.test:{port}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(80 * 1024),
        port = origin.port()
    );
    let response = exchange_bytes(proxy.addr(), request.as_bytes()).await;
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 431"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(
        origin.seen().is_empty(),
        "an oversized request was forwarded"
    );
    still_serves(&proxy).await;
}

#[tokio::test]
async fn a_request_target_over_the_limit_gets_414() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    // max_uri_bytes defaults to 16 KiB; the head (20 KiB) stays under max_header_bytes.
    let request = format!(
        "GET http://origin.test:{port}/{} HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n",
        "p".repeat(20 * 1024),
        port = origin.port()
    );
    let response = exchange_bytes(proxy.addr(), request.as_bytes()).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 414"), "{text}");
    assert!(text.contains("max_uri_bytes"), "{text}");
    assert!(origin.seen().is_empty());
    let records = proxy.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], 414);
    still_serves(&proxy).await;
}

#[tokio::test]
async fn malformed_targets_get_a_400_that_says_what_is_wrong() {
    let proxy = start_proxy(None, |_| {}).await;
    // (request, what the 400's body must say)
    let rows: [(&str, &str); 7] = [
        (
            "GET ftp://files.test/x HTTP/1.1\r\nHost: files.test\r\n\r\n",
            "unsupported scheme `ftp`",
        ),
        (
            "GET gopher://files.test/x HTTP/1.1\r\nHost: files.test\r\n\r\n",
            "unsupported scheme `gopher`",
        ),
        (
            "GET http://origin.test:99999/ HTTP/1.1\r\nHost: origin.test\r\n\r\n",
            "invalid port",
        ),
        (
            "GET http://origin.test:0/ HTTP/1.1\r\nHost: origin.test\r\n\r\n",
            "invalid port",
        ),
        // RFC 9110 §9.3.6: CONNECT needs host:port.
        (
            "CONNECT secure.test HTTP/1.1\r\nHost: secure.test\r\n\r\n",
            "is not host:port",
        ),
        (
            "CONNECT secure.test:0 HTTP/1.1\r\nHost: secure.test\r\n\r\n",
            "is not host:port",
        ),
        (
            "CONNECT user@secure.test:443 HTTP/1.1\r\nHost: secure.test\r\n\r\n",
            "is not host:port",
        ),
    ];
    for (request, says) in rows {
        let response = exchange_bytes(proxy.addr(), request.as_bytes()).await;
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 400"), "{request:?}: {text}");
        assert!(text.contains(says), "{request:?}: {text}");
    }
    // A request line hyper cannot even parse still gets a 400 (from hyper, without a body).
    let response = exchange_bytes(proxy.addr(), b"GET http://a b/ HTTP/1.1\r\n\r\n").await;
    assert!(
        String::from_utf8_lossy(&response).starts_with("HTTP/1.1 400"),
        "{response:?}"
    );
    still_serves(&proxy).await;
}

#[tokio::test]
async fn plain_http_inside_connect_is_served_with_hsts_applied() {
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let plain = Origin::http().await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;

    // Without HSTS, plain HTTP inside a tunnel is forwarded as plain HTTP.
    let mut tunnel = open_tunnel(proxy.addr(), &format!("origin.test:{}", plain.port())).await;
    tunnel
        .write_all(b"GET /inside HTTP/1.1\r\nHost: origin.test\r\n\r\n")
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&read_response(&mut tunnel).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("GET /inside 0\n"), "{text}");
    assert_eq!(plain.count("/inside"), 1);

    // Learn secure.test over verified TLS, then tunnel plain HTTP to it: 307 to https.
    let learned = proxy
        .client()
        .get(format!(
            "https://secure.test:{}/sts?v=max-age%3D3600",
            secure.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(learned.status(), 200);
    let mut tunnel = open_tunnel(proxy.addr(), "secure.test:80").await;
    tunnel
        .write_all(b"GET /login?next=1 HTTP/1.1\r\nHost: secure.test\r\n\r\n")
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&read_response(&mut tunnel).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 307 Internal Redirect"), "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("location: https://secure.test/login?next=1\r\n"),
        "{text}"
    );
    assert!(lower.contains("non-authoritative-reason: hsts"), "{text}");
    let records = proxy.records().await;
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "hsts_internal_redirect"
                && r["url"] == "http://secure.test:80/login?next=1"),
        "{records:?}"
    );
}

#[tokio::test]
async fn bytes_that_are_neither_tls_nor_http_close_the_tunnel_with_one_log_line() {
    // The test runtime is single-threaded: the proxy's tasks log through this subscriber.
    let captured = hostile::capture_logs();

    let proxy = start_proxy(None, |_| {}).await;
    let mut tunnel = open_tunnel(proxy.addr(), "origin.test:5000").await;
    tunnel.write_all(b"\x00\x01\x02binary\xff").await.unwrap();
    let rest = read_until_closed(&mut tunnel, Duration::from_secs(5)).await;
    assert_eq!(
        rest.as_deref(),
        Some(&b""[..]),
        "the tunnel was not closed (or answered)"
    );
    assert!(
        eventually(Duration::from_secs(2), || captured
            .lines_with(&["neither TLS nor HTTP"])
            .len()
            == 1)
        .await,
        "expected one log line: {}",
        captured.text()
    );
    still_serves(&proxy).await;
}

#[tokio::test]
async fn a_client_hello_without_sni_gets_a_leaf_for_the_connect_host() {
    let ca = TestCa::new();
    let origin = Origin::https_h1(&ca).await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;

    // An IP literal: rustls never sends SNI for one (RFC 6066 §3), so the proxy must mint the
    // leaf from the CONNECT host, with an iPAddress SAN for the client to match.
    let authority = format!("127.0.0.1:{}", origin.port());
    let stream = open_tunnel(proxy.addr(), &authority).await;
    let connector = tokio_rustls::TlsConnector::from(trusting_proxy(&proxy, true, &[b"http/1.1"]));
    let name =
        rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    let mut tls = connector.connect(name, stream).await.unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let ips: Vec<_> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::IPAddress(ip) => Some(ip.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(ips, vec![vec![127, 0, 0, 1]]);
    tls.write_all(format!("GET /no-sni HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&read_response(&mut tls).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("GET /no-sni 0\n"), "{text}");

    // A DNS name with SNI switched off (old clients, some IoT stacks): the CONNECT host.
    let stream = open_tunnel(proxy.addr(), &format!("secure.test:{}", origin.port())).await;
    let connector = tokio_rustls::TlsConnector::from(trusting_proxy(&proxy, false, &[b"http/1.1"]));
    let mut tls = connector
        .connect("secure.test".try_into().unwrap(), stream)
        .await
        .unwrap();
    tls.write_all(b"GET /no-sni-dns HTTP/1.1\r\nHost: secure.test\r\n\r\n")
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&read_response(&mut tls).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(origin.count("/no-sni-dns"), 1);
}

#[tokio::test]
async fn hostile_sts_and_location_fields_are_findings_never_a_panic() {
    let ca = TestCa::new();
    let answer = |path: &str| -> Vec<u8> {
        let field: &[u8] = match path {
            "/sts-bytes" => b"Strict-Transport-Security: max-age=\xff\xfe3600",
            "/sts-empty" => b"Strict-Transport-Security: ",
            "/sts-quote" => b"Strict-Transport-Security: max-age=\"3600",
            "/sts-twice" => b"Strict-Transport-Security: max-age=1, max-age=2",
            "/sts-huge" => b"Strict-Transport-Security: max-age=999999999999999999999999999999",
            "/sts-junk" => b"Strict-Transport-Security: ;;;=;includeSubDomains=\x80",
            "/loc-bytes" => b"Location: /caf\xe9\xff",
            "/loc-bracket" => b"Location: http://[oops/",
            "/loc-port" => b"Location: http://a.test:99999999/",
            "/loc-empty-host" => b"Location: http:///x",
            _ => b"X-Nothing: 1",
        };
        let status = if path.starts_with("/loc") {
            "302 Found"
        } else {
            "200 OK"
        };
        raw_response(status, &[field], b"ok\n")
    };
    let origin = RawOrigin::start(Some(ca.server_config(&[b"http/1.1"])), answer).await;
    let plain = Origin::http().await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    let client = proxy.client();

    // (path, status the client gets, finding kind that must be reported, if any)
    let rows: [(&str, u16, Option<&str>); 10] = [
        ("/sts-bytes", 200, Some("sts_invalid")),
        ("/sts-empty", 200, Some("sts_invalid")),
        ("/sts-quote", 200, Some("sts_invalid")),
        ("/sts-twice", 200, Some("sts_invalid")),
        ("/sts-huge", 200, None),
        ("/sts-junk", 200, Some("sts_invalid")),
        ("/loc-bytes", 302, Some("bad_location")),
        ("/loc-bracket", 302, Some("bad_location")),
        ("/loc-port", 302, Some("bad_location")),
        ("/loc-empty-host", 302, None),
    ];
    for (path, status, _) in rows {
        for method in ["GET", "POST"] {
            let response = client
                .request(
                    method.parse().unwrap(),
                    format!("https://other.test:{}{path}", origin.addr.port()),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{method} {path}");
            assert_eq!(response.text().await.unwrap(), "ok\n", "{method} {path}");
        }
    }
    let records = proxy.records().await;
    assert_eq!(records.len(), rows.len() * 2);
    for (i, (path, _, kind)) in rows.iter().enumerate() {
        for record in &records[i * 2..i * 2 + 2] {
            assert!(record["url"].as_str().unwrap().ends_with(path), "{record}");
            let kinds: Vec<&str> = record["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["kind"].as_str().unwrap())
                .collect();
            if let Some(kind) = kind {
                assert!(kinds.contains(kind), "{path}: {kinds:?}");
            }
        }
    }
    // Nothing invalid was learned: plain HTTP to the host still goes out (the huge max-age,
    // whatever it became, must not have broken the store either).
    let response = client
        .get(format!("http://other.test:{}/after", plain.port()))
        .send()
        .await
        .unwrap();
    assert!(
        [200, 307].contains(&response.status().as_u16()),
        "{}",
        response.status()
    );
    let entries = reqwest::get(format!("http://{}/hsts", proxy.proxy.admin_addr.unwrap()))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert!(entries.is_array(), "{entries}");
}

#[tokio::test]
async fn non_utf8_header_bytes_pass_through_untouched() {
    let origin = RawOrigin::start(None, |_| {
        raw_response("200 OK", &[b"X-Back: \xff\xfe caf\xe9 \x80 end"], b"body\n")
    })
    .await;
    let proxy = start_proxy(None, |_| {}).await;
    let mut request = format!(
        "GET http://origin.test:{port}/raw HTTP/1.1\r\nHost: origin.test:{port}\r\n",
        port = origin.addr.port()
    )
    .into_bytes();
    request.extend_from_slice(b"X-Raw: caf\xe9 \x80\xfe\xff end\r\n\r\n");
    let response = exchange_bytes(proxy.addr(), &request).await;

    let heads = origin.heads();
    assert_eq!(heads.len(), 1);
    let lower = heads[0].to_ascii_lowercase();
    assert!(
        find(&lower, b"\r\nx-raw: caf\xe9 \x80\xfe\xff end\r\n").is_some(),
        "the origin saw {:?}",
        String::from_utf8_lossy(&heads[0])
    );
    assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
    assert!(
        find(
            &response.to_ascii_lowercase(),
            b"\r\nx-back: \xff\xfe caf\xe9 \x80 end\r\n"
        )
        .is_some(),
        "the client got {:?}",
        String::from_utf8_lossy(&response)
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Timeouts and limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_slowloris_client_is_closed_after_the_header_read_timeout() {
    let proxy = start_with_toml(None, "header_read_timeout_secs = 1\n", |_| {}).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let start = Instant::now();
    stream
        .write_all(b"GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n")
        .await
        .unwrap();
    // Drip one header field every 200 ms, never finishing the head, until the proxy hangs up.
    let mut closed = false;
    for i in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stream
            .write_all(format!("X-Drip-{i}: x\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    let elapsed = start.elapsed();
    assert!(closed, "the slow client was never cut off");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?}, expected about 1 s"
    );
    still_serves(&proxy).await;
}

/// Sends `GET url` on a keep-alive connection through the proxy and reads its response.
async fn keep_alive_get(conn: &mut hostile::RawConn<TcpStream>, url: &str) -> hostile::RawResponse {
    conn.stream
        .write_all(hostile::get(url).as_bytes())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), conn.read_response("GET"))
        .await
        .expect("no response within 5 s")
        .expect("the proxy closed the connection instead of answering")
}

#[tokio::test]
async fn a_keep_alive_client_idle_past_the_header_timeout_keeps_its_connection() {
    let origin = Origin::http().await;
    let toml = "header_read_timeout_secs = 1\nidle_timeout_secs = 30\n";
    let proxy = start_with_toml(None, toml, |_| {}).await;
    let base = format!("http://origin.test:{}", origin.port());
    let mut conn = hostile::RawConn::new(TcpStream::connect(proxy.addr()).await.unwrap());
    assert_eq!(
        keep_alive_get(&mut conn, &format!("{base}/first"))
            .await
            .status,
        200
    );
    // Twice the header timeout between requests: that wait is the idle timeout's to judge.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = keep_alive_get(&mut conn, &format!("{base}/second")).await;
    assert_eq!(second.status, 200);
    assert_eq!(origin.count("/second"), 1);
}

#[tokio::test]
async fn a_stalled_request_head_is_cut_at_the_header_timeout_on_any_request() {
    let origin = Origin::http().await;
    let toml = "header_read_timeout_secs = 1\nidle_timeout_secs = 30\n";
    let proxy = start_with_toml(None, toml, |_| {}).await;
    let base = format!("http://origin.test:{}", origin.port());
    let partial = format!("GET {base}/stalled HTTP/1.1\r\nHost: origin.test\r\n");
    let expect_cut = |what: &str, elapsed: Duration| {
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
            "{what}: closed after {elapsed:?}, expected about 1 s"
        );
    };

    // The first request of a connection: half a head, then silence.
    let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
    first.write_all(partial.as_bytes()).await.unwrap();
    let start = Instant::now();
    let rest = read_until_closed(&mut first, Duration::from_secs(10)).await;
    assert!(rest.is_some(), "a stalled first head kept its connection");
    expect_cut("first request", start.elapsed());

    // A later request on a keep-alive connection, begun after an idle wait longer than the
    // header timeout: the guard arms on that request's first byte, not when the wait began.
    let mut conn = hostile::RawConn::new(TcpStream::connect(proxy.addr()).await.unwrap());
    assert_eq!(
        keep_alive_get(&mut conn, &format!("{base}/first"))
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    conn.stream.write_all(partial.as_bytes()).await.unwrap();
    let start = Instant::now();
    let rest = read_until_closed(&mut conn.stream, Duration::from_secs(10)).await;
    assert!(rest.is_some(), "a stalled second head kept its connection");
    expect_cut("second request", start.elapsed());
    assert_eq!(origin.count("/stalled"), 0);
    still_serves(&proxy).await;
}

#[tokio::test]
async fn inside_an_intercepted_tunnel_idle_waits_are_kept_and_stalled_heads_are_cut() {
    let ca = TestCa::new();
    let origin = Origin::https_h1(&ca).await;
    let toml = "header_read_timeout_secs = 1\nidle_timeout_secs = 30\n";
    let proxy = start_with_toml(Some(&ca), toml, |_| {}).await;
    let authority = format!("secure.test:{}", origin.port());
    let stream = open_tunnel(proxy.addr(), &authority).await;
    let connector = tokio_rustls::TlsConnector::from(trusting_proxy(&proxy, true, &[b"http/1.1"]));
    let tls = connector
        .connect("secure.test".try_into().unwrap(), stream)
        .await
        .unwrap();
    let mut conn = hostile::RawConn::new(tls);
    let request = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    for path in ["/first", "/after-idle"] {
        conn.stream
            .write_all(request(path).as_bytes())
            .await
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), conn.read_response("GET"))
            .await
            .expect("no response within 5 s")
            .expect("the tunnel closed instead of answering");
        assert_eq!(response.status, 200, "{path}");
        // Twice the header timeout before the next request: idle, not slow.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(origin.count("/after-idle"), 1);
    conn.stream
        .write_all(format!("GET /stalled HTTP/1.1\r\nHost: {authority}\r\n").as_bytes())
        .await
        .unwrap();
    let start = Instant::now();
    assert!(
        conn.closed_within(Duration::from_secs(10)).await,
        "a stalled head inside the tunnel kept its connection"
    );
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?}, expected about 1 s"
    );
    assert_eq!(origin.count("/stalled"), 0);
}

#[tokio::test]
async fn a_keep_alive_connection_idle_past_the_idle_timeout_is_closed() {
    let origin = Origin::http().await;
    let toml = "header_read_timeout_secs = 1\nidle_timeout_secs = 2\n";
    let proxy = start_with_toml(None, toml, |_| {}).await;
    let url = format!("http://origin.test:{}/once", origin.port());
    let mut conn = hostile::RawConn::new(TcpStream::connect(proxy.addr()).await.unwrap());
    // A new connection that never sends a byte has no head to time: it is idle too.
    let mut silent = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(keep_alive_get(&mut conn, &url).await.status, 200);
    let start = Instant::now();
    let (rest, silent_rest) = tokio::join!(
        read_until_closed(&mut conn.stream, Duration::from_secs(10)),
        read_until_closed(&mut silent, Duration::from_secs(10)),
    );
    assert!(rest.is_some(), "an idle keep-alive connection stayed open");
    assert!(silent_rest.is_some(), "a silent new connection stayed open");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}, expected about 2 s (the idle timeout, not the header timeout)"
    );
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_the_idle_timeout() {
    let origin = Origin::http().await;
    let proxy = start_with_toml(None, "idle_timeout_secs = 1\n", |_| {}).await;
    let mut tunnel = open_tunnel(proxy.addr(), &format!("origin.test:{}", origin.port())).await;
    let start = Instant::now();
    let rest = read_until_closed(&mut tunnel, Duration::from_secs(5)).await;
    assert!(rest.is_some(), "an idle tunnel stayed open");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed too early: {elapsed:?}"
    );
}

#[tokio::test]
async fn an_upstream_that_never_finishes_its_tls_handshake_is_a_504() {
    // Accepts TCP and then says nothing: the upstream TLS handshake can only time out.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let held2 = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            held2.lock().unwrap().push(stream);
        }
    });
    let ca = TestCa::new();
    let proxy = start_with_toml(Some(&ca), "tls_handshake_timeout_secs = 1\n", |_| {}).await;
    let start = Instant::now();
    let response = proxy
        .client()
        .get(format!("https://secure.test:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let text = response.text().await.unwrap();
    assert!(text.contains("secure.test"), "{text}");
}

#[tokio::test]
async fn past_the_connection_cap_clients_get_503_and_the_accept_loop_keeps_serving() {
    let origin = Origin::http().await;
    let proxy = start_with_toml(None, "max_connections = 2\n", |_| {}).await;
    let request = format!(
        "GET http://origin.test:{port}/held HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n",
        port = origin.port()
    );

    // Two kept-alive connections fill the cap.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let text = String::from_utf8_lossy(&read_response(&mut stream).await).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        held.push(stream);
    }

    // Every client past the cap gets a 503 at once, many of them together.
    let refused = futures_util::future::join_all((0..20).map(|_| async {
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        read_until_closed(&mut stream, Duration::from_secs(5)).await
    }))
    .await;
    for answer in refused {
        let answer = answer.expect("a refused client was left hanging");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.contains("Retry-After: 1"), "{text}");
    }

    // The held connections still work.
    for stream in &mut held {
        stream.write_all(request.as_bytes()).await.unwrap();
        let text = String::from_utf8_lossy(&read_response(stream).await).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }

    // Once one closes, its slot serves a new client.
    drop(held.pop());
    let mut served = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let response = exchange_bytes(proxy.addr(), request.as_bytes()).await;
        if response.starts_with(b"HTTP/1.1 200") {
            served = true;
            break;
        }
        assert!(response.starts_with(b"HTTP/1.1 503"), "{response:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "the freed slot was never reused");
}

#[tokio::test]
async fn the_leaf_cache_stays_within_its_cap() {
    let ca = TestCa::new();
    let origin = Origin::https(&ca).await;
    let proxy = start_with_toml(Some(&ca), "leaf_cache_size = 2\n", |_| {}).await;
    let names = ["secure.test", "other.test", "origin.test", "plain.test"];
    for name in names {
        let response = proxy
            .client()
            .get(format!("https://{name}:{}/", origin.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
    }
    let cache = proxy.proxy.shared.interceptor.leaf_cache();
    assert_eq!(cache.capacity(), 2);
    assert!(cache.len() <= 2, "{} leaves cached", cache.len());
    assert_eq!(cache.misses(), names.len() as u64);
}

// ---------------------------------------------------------------------------------------------
// 3. Loop protection
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_aimed_at_the_proxy_itself_get_508() {
    let proxy = start_proxy(None, |_| {}).await;
    let port = proxy.addr().port();
    let rows = [
        format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
        format!("GET http://localhost:{port}/x HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"),
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    ];
    for request in &rows {
        let text = String::from_utf8_lossy(&exchange_bytes(proxy.addr(), request.as_bytes()).await)
            .into_owned();
        assert!(text.starts_with("HTTP/1.1 508"), "{request}: {text}");
        assert!(text.contains("loop detected"), "{text}");
    }
    // A name resolved (--resolve) to the proxy's address loops too.
    let resolved = start_proxy(None, |o| o.resolve.push("loop.test=127.0.0.1".into())).await;
    let port = resolved.addr().port();
    let text = String::from_utf8_lossy(
        &exchange_bytes(
            resolved.addr(),
            format!("GET http://loop.test:{port}/ HTTP/1.1\r\nHost: loop.test\r\n\r\n").as_bytes(),
        )
        .await,
    )
    .into_owned();
    assert!(text.starts_with("HTTP/1.1 508"), "{text}");
    let records = proxy.records().await;
    assert_eq!(records.len(), rows.len());
    assert!(records.iter().all(|r| r["status"] == 508));
}

#[tokio::test]
async fn a_via_chain_that_already_holds_this_proxy_gets_508() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let url = format!("http://origin.test:{}/via", origin.port());
    let first = proxy.client().get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let via = first.headers()["via"].to_str().unwrap().to_string();

    // The Via the proxy added, sent back as if the request had come round again.
    let looped = proxy
        .client()
        .get(&url)
        .header("via", format!("1.1 upstream-gw, {via}"))
        .send()
        .await
        .unwrap();
    assert_eq!(looped.status(), 508);
    assert!(looped.text().await.unwrap().contains("Via"));
    assert_eq!(
        origin.count("/via"),
        1,
        "the looping request reached the origin"
    );

    // Another strictproxy in the chain (another pseudonym) is not a loop.
    let other = proxy
        .client()
        .get(&url)
        .header("via", "1.1 strictproxy-00000000")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(origin.count("/via"), 2);
}

// ---------------------------------------------------------------------------------------------
// 4. Access
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn proxy_credentials_are_required_when_configured() {
    let ca = TestCa::new();
    let origin = Origin::http().await;
    let secure = Origin::https(&ca).await;
    let proxy = start_proxy(Some(&ca), |o| o.auth = Some("alice:s3cret".into())).await;
    let url = format!("http://origin.test:{}/auth", origin.port());

    let client_with = |creds: Option<(&str, &str)>| {
        let mut p = reqwest::Proxy::all(format!("http://{}", proxy.addr())).unwrap();
        if let Some((user, pass)) = creds {
            p = p.basic_auth(user, pass);
        }
        reqwest::Client::builder()
            .proxy(p)
            .add_root_certificate(reqwest::Certificate::from_pem(&proxy.ca_pem()).unwrap())
            .build()
            .unwrap()
    };

    for creds in [None, Some(("alice", "wrong")), Some(("alic", "s3cret"))] {
        let response = client_with(creds).get(&url).send().await.unwrap();
        assert_eq!(response.status(), 407, "{creds:?}");
        let challenge = response.headers()["proxy-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
    }
    assert_eq!(origin.count("/auth"), 0);

    // CONNECT is refused the same way, before any tunnel opens.
    let text = String::from_utf8_lossy(
        &exchange_bytes(
            proxy.addr(),
            format!(
                "CONNECT secure.test:{p} HTTP/1.1\r\nHost: secure.test:{p}\r\n\r\n",
                p = secure.port()
            )
            .as_bytes(),
        )
        .await,
    )
    .into_owned();
    assert!(text.starts_with("HTTP/1.1 407"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("proxy-authenticate: basic"),
        "{text}"
    );

    let good = client_with(Some(("alice", "s3cret")));
    let response = good.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = good
        .get(format!("https://secure.test:{}/auth", secure.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The credentials are for the proxy: never forwarded.
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].headers.contains_key("proxy-authorization"));
}
