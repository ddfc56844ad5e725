//! Integration tests for the proxy core over real sockets: plain forwarding, CONNECT with
//! interception, HTTP/2, passthrough tunnels, WebSocket, upstream failures, bad input, and the
//! leaf cache. Origins and the proxy run on 127.0.0.1; nothing leaves loopback.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn plain_forwarding_carries_every_method_and_body() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let client = proxy.client();
    let url = format!("http://origin.test:{}/echo", origin.port());
    for method in ["GET", "POST", "PUT", "DELETE"] {
        let body = format!("body of {method}");
        let response = client
            .request(method.parse().unwrap(), &url)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method}");
        let via = response.headers()["via"].to_str().unwrap().to_string();
        assert!(via.contains("strictproxy"), "response Via: {via}");
        let text = response.text().await.unwrap();
        assert_eq!(text, format!("{method} /echo {}\n", body.len()));
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 4);
    for s in &seen {
        assert!(s.headers["via"].contains("strictproxy"), "request Via");
        assert_eq!(s.host, format!("origin.test:{}", origin.port()));
    }
    assert_eq!(seen[1].body, b"body of POST");
    let records = proxy.records().await;
    assert_eq!(records.len(), 4);
    assert!(records
        .iter()
        .all(|r| r["action"] == "forwarded" && r["status"] == 200));
    assert_eq!(records[1]["request_bytes"], "body of POST".len());
}

#[tokio::test]
async fn hop_by_hop_fields_are_not_forwarded() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let request = format!(
        "GET http://origin.test:{port}/echo HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nProxy-Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: Basic dTpw\r\nX-Kept: yes\r\n\r\n",
        port = origin.port()
    );
    let response = raw_exchange(proxy.addr(), request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let seen = &origin.seen()[0];
    for name in [
        "x-secret",
        "proxy-connection",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(!seen.headers.contains_key(name), "{name} was forwarded");
    }
    assert_eq!(seen.headers["x-kept"], "yes");
}

#[tokio::test]
async fn connect_is_intercepted_with_a_leaf_from_the_local_ca() {
    let ca = TestCa::new();
    let origin = Origin::https(&ca).await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    // The client trusts only the proxy's CA: success proves the proxy minted the leaf.
    let response = proxy
        .get(format!("https://secure.test:{}/hello", origin.port()))
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["via"]
        .to_str()
        .unwrap()
        .contains("strictproxy"));
    assert_eq!(response.text().await.unwrap(), "GET /hello 0\n");
    assert_eq!(origin.count("/hello"), 1);
    let records = proxy.records().await;
    assert_eq!(
        records[0]["url"],
        format!("https://secure.test:{}/hello", origin.port())
    );
    assert_eq!(records[0]["action"], "forwarded");
}

#[tokio::test]
async fn http2_between_client_and_proxy_and_to_the_upstream() {
    let ca = TestCa::new();
    let origin = Origin::https(&ca).await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    let response = proxy
        .client()
        .post(format!("https://secure.test:{}/h2", origin.port()))
        .body("over h2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), "POST /h2 7\n");
    // The origin offers h2 by ALPN, so the proxy speaks h2 upstream too.
    let seen = &origin.seen()[0];
    assert_eq!(seen.version, http::Version::HTTP_2);
    // RFC 9113 §8.3.1: the authority goes as `:authority` only; nginx answers a `host` field
    // beside it with 400 (bench/run.sh's S7 found the proxy sending both).
    assert!(
        !seen.headers.contains_key("host"),
        "a Host field went upstream over HTTP/2: {:?}",
        seen.headers
    );
    assert_eq!(seen.host, format!("secure.test:{}", origin.port()));
}

#[tokio::test]
async fn passthrough_hosts_are_tunnelled_blind() {
    let ca = TestCa::new();
    let origin = Origin::https(&ca).await;
    let proxy = start_proxy(Some(&ca), |o| o.passthrough = vec!["*.secure.test".into()]).await;
    // This client trusts only the origin's CA, not the proxy's: it succeeds only if the
    // proxy did not terminate TLS.
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", proxy.addr())).unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = client
        .get(format!("https://sub.secure.test:{}/tunnel", origin.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("via").is_none(),
        "a blind tunnel adds nothing"
    );
    assert_eq!(response.text().await.unwrap(), "GET /tunnel 0\n");
    drop(client);
    // The tunnel record is written when the tunnel closes.
    let mut records = Vec::new();
    for _ in 0..50 {
        records = proxy.records().await;
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["action"], "tunnel");
    assert_eq!(records[0]["method"], "CONNECT");
    assert!(records[0]["response_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn websocket_through_the_plain_path() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let handshake = format!(
        "GET http://origin.test:{port}/ws HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        port = origin.port()
    );
    stream.write_all(handshake.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        stream,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    ws.send(Message::text("ping over ws")).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "ping over ws");
}

#[tokio::test]
async fn websocket_through_the_intercepted_path() {
    let ca = TestCa::new();
    let origin = Origin::https(&ca).await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    let tls = connect_through(&proxy, "secure.test", origin.port(), &[b"http/1.1"]).await;
    let url = format!("wss://secure.test:{}/ws", origin.port());
    let (mut ws, response) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("ping over wss")).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "ping over wss");
}

#[tokio::test]
async fn upstream_down_is_a_502_naming_host_and_cause() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let proxy = start_proxy(None, |_| {}).await;
    let response = proxy.get(format!("http://origin.test:{port}/")).await;
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("origin.test") && text.contains("refused"),
        "{text}"
    );
    let records = proxy.records().await;
    assert!(records
        .iter()
        .all(|r| r["action"] == "error" && r["status"] == 502));
}

#[tokio::test]
async fn untrusted_upstream_certificate_is_a_502_and_nothing_is_sent() {
    let ca = TestCa::new();
    let origin = Origin::https(&ca).await;
    // The proxy is not told about the origin's CA.
    let proxy = start_proxy(None, |_| {}).await;
    let response = proxy
        .client()
        .post(format!("https://secure.test:{}/secret", origin.port()))
        .body("password=hunter2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("certificate") && text.contains("secure.test"),
        "{text}"
    );
    assert!(
        origin.seen().is_empty(),
        "the request went over an unverified connection"
    );
}

#[tokio::test]
async fn garbage_bytes_get_a_400() {
    let proxy = start_proxy(None, |_| {}).await;
    let response = raw_exchange(proxy.addr(), b"\x00\x01\x02 garbage \xff\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response:?}");
    // An origin-form request is not something a proxy can forward.
    let response = raw_exchange(
        proxy.addr(),
        b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("absolute form"), "{response}");
    // A CONNECT target without a port.
    let response = raw_exchange(
        proxy.addr(),
        b"CONNECT secure.test HTTP/1.1\r\nHost: secure.test\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    // The proxy still serves others.
    let origin = Origin::http().await;
    let ok = proxy
        .get(format!("http://origin.test:{}/", origin.port()))
        .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_second_connect_reuses_the_cached_leaf() {
    let ca = TestCa::new();
    let origin = Origin::https(&ca).await;
    let proxy = start_proxy(Some(&ca), |_| {}).await;
    for _ in 0..2 {
        // A new client each time: a new CONNECT and a new handshake.
        let response = proxy
            .get(format!("https://secure.test:{}/", origin.port()))
            .await;
        assert_eq!(response.status(), 200);
    }
    let cache = proxy.proxy.shared.interceptor.leaf_cache();
    assert_eq!(cache.misses(), 1, "one leaf minted");
    assert!(cache.hits() >= 1, "the second CONNECT hit the cache");
}

#[tokio::test]
async fn large_bodies_stream_without_buffering() {
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let size: u64 = 1024 * 1024 * 1024;
    let before = rss_kib();
    let mut response = proxy
        .get(format!("http://origin.test:{}/big/{size}", origin.port()))
        .await;
    let mut total = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        total += chunk.len() as u64;
    }
    assert_eq!(total, size);
    let growth_mib = (rss_kib().saturating_sub(before)) / 1024;
    // Origin, proxy and client share this process: all of them together stay far below the
    // body size, which a buffering proxy would need.
    assert!(
        growth_mib < 64,
        "RSS grew by {growth_mib} MiB for a {} MiB body",
        size >> 20
    );

    // The same for an upload, streamed from the client in 64 KiB chunks.
    let before = rss_kib();
    let chunk = bytes::Bytes::from(vec![b'u'; 64 * 1024]);
    let chunks = (size / chunk.len() as u64) as usize;
    let stream = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let response = proxy
        .client()
        .post(format!("http://origin.test:{}/sink", origin.port()))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), format!("received {size}\n"));
    let growth_mib = (rss_kib().saturating_sub(before)) / 1024;
    assert!(
        growth_mib < 64,
        "RSS grew by {growth_mib} MiB for a {} MiB upload",
        size >> 20
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Opens a CONNECT tunnel through the proxy and a TLS session over it that trusts the proxy CA.
pub async fn connect_through(
    proxy: &TestProxy,
    host: &str,
    port: u16,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let stream = open_tunnel(proxy.addr(), &format!("{host}:{port}")).await;
    let connector = tokio_rustls::TlsConnector::from(trusting_proxy(proxy, true, alpn));
    connector
        .connect(host.to_string().try_into().unwrap(), stream)
        .await
        .unwrap()
}

/// An origin that answers the first request on each connection and then, keeping the
/// connection open as if for keep-alive, closes it as soon as a second request arrives: the
/// race a pooled upstream connection loses when the origin's keep-alive runs out.
async fn origin_closing_reused_connections() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let refused_count = refused.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let refused = refused.clone();
            tokio::spawn(async move {
                let _ = read_head(&mut stream).await;
                let body = "fresh\n";
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await.unwrap();
                let mut buf = [0u8; 1024];
                // The second request: read it whole, then close without a word.
                if stream.read(&mut buf).await.unwrap_or(0) > 0 {
                    refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    (port, refused_count)
}

#[tokio::test]
async fn a_get_on_a_pooled_connection_the_origin_closed_is_sent_again() {
    let (port, refused) = origin_closing_reused_connections().await;
    let proxy = start_proxy(None, |_| {}).await;
    let client = proxy.client();
    for _ in 0..3 {
        let response = client
            .get(format!("http://origin.test:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "fresh\n");
    }
    assert!(
        refused.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the proxy never reused a pooled connection, so nothing was tested"
    );
}

/// A keep-alive origin that answers every GET with `body_len` bytes and counts the
/// connections it accepts: what the proxy's upstream pool did, seen from the origin.
async fn counting_origin(body_len: usize) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                // Head and body in one write: two small writes would wait on Nagle and the
                // proxy's delayed ACK (40 ms a request).
                let mut answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n").into_bytes();
                answer.resize(answer.len() + body_len, b'x');
                // One GET head after another until the proxy closes the connection.
                let mut seen = Vec::new();
                let mut byte = [0u8; 1];
                loop {
                    match stream.read(&mut byte).await {
                        Ok(1) => seen.push(byte[0]),
                        _ => return,
                    }
                    if seen.ends_with(b"\r\n\r\n") {
                        seen.clear();
                        if stream.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn sequential_requests_to_one_origin_share_one_upstream_connection() {
    let (port, accepted) = counting_origin(100).await;
    let proxy = start_proxy(None, |_| {}).await;
    let client = proxy.client();
    for _ in 0..20 {
        let response = client
            .get(format!("http://origin.test:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.unwrap().len(), 100);
    }
    // The pool takes a connection back when its response body has been read to the end.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_response_the_client_abandons_does_not_leave_its_connection_in_the_pool() {
    let (port, accepted) = counting_origin(8 << 20).await;
    let proxy = start_proxy(None, |_| {}).await;
    // A raw client reads the head and a little of the 8 MiB body, then goes away.
    let mut raw = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let request =
        format!("GET http://origin.test:{port}/ HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n");
    raw.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut some = [0u8; 4096];
    raw.read_exact(&mut some).await.unwrap();
    drop(raw);
    // The rest of that body is still on its way: the connection cannot carry another
    // exchange, so the next request must get a fresh one and a whole answer.
    let response = proxy
        .client()
        .get(format!("http://origin.test:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), 8 << 20);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}
