//! Hostile peers against the real proxy over real sockets (issue 11, items 9–12 and 15): raw
//! origins that mis-frame, hang or switch protocols unasked, a client that breaks its own
//! chunked framing, and clients whose TLS name or request authority is not the tunnel's.
//! Each test asserts the safe property: nothing truncated or smuggled into the next response,
//! the right status, and who failed in the log and the metrics.

mod common;

use common::hostile::{capture_logs, get, metric, pipeline, RawConn, RawOrigin, Reply};
use common::{start_proxy, Origin, TestCa};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Item 9. RFC 9112 §6.3: a response with both Content-Length and Transfer-Encoding is
/// refused with 502 (as nginx ≥ 1.23 and Envoy do); the responses pipelined behind it arrive
/// whole, and none of the refused bodies reaches the client.
#[tokio::test]
async fn both_lengths_are_refused_and_the_pipeline_survives() {
    let logs = capture_logs();
    let origin = RawOrigin::start(|path| match path {
        // Content-Length larger than the chunked body: relayed as is, it would swallow the
        // next response.
        "/long" => Reply::Bytes(
            b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
        ),
        // Content-Length smaller than the chunked body: relayed, a complete-looking 5 bytes.
        "/short" => {
            let chunk = "y".repeat(70);
            Reply::Bytes(
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n46\r\n{chunk}\r\n0\r\n\r\n")
                    .into_bytes(),
            )
        }
        _ => Reply::ok("ok"),
    })
    .await;
    let proxy = start_proxy(None, |_| {}).await;
    let base = format!("http://plain.test:{}", origin.port());
    let requests: Vec<String> = ["/long", "/ok", "/short", "/ok"]
        .iter()
        .map(|path| get(&format!("{base}{path}")))
        .collect();

    let responses = pipeline(proxy.addr(), &requests).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [502, 200, 502, 200], "{responses:#?}");
    for refused in [&responses[0], &responses[2]] {
        assert!(
            refused
                .text()
                .contains("Content-Length and Transfer-Encoding"),
            "{}",
            refused.text()
        );
        assert!(!refused.text().contains("hello") && !refused.text().contains("yyyyy"));
    }
    for ok in [&responses[1], &responses[3]] {
        assert_eq!(ok.text(), "ok");
    }
    assert_eq!(origin.count("/long") + origin.count("/short"), 2);

    let admin = proxy.proxy.admin_addr.unwrap();
    let refused =
        r#"strictproxy_forward_errors_total{culprit="upstream",cause="ambiguous_length"}"#;
    assert_eq!(metric(admin, refused).await, 2.0);
    assert_eq!(
        logs.lines_with(&["culprit=\"upstream\"", "ambiguous_length", "/long"])
            .len(),
        1,
        "{}",
        logs.text()
    );
    let records = proxy.records().await;
    let logged: Vec<u64> = records
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(logged, [502, 200, 502, 200]);
}

/// Item 10. An upstream that accepts and never answers gets `504` naming the host once
/// `response_timeout_secs` has passed, and the client's connection goes on serving.
#[tokio::test]
async fn a_silent_upstream_is_a_504_after_the_response_timeout() {
    let logs = capture_logs();
    let origin = RawOrigin::start(|path| match path {
        "/hang" => Reply::Silent,
        _ => Reply::ok("ok"),
    })
    .await;
    let proxy = start_proxy(None, |o| o.response_timeout_secs = Some(1)).await;
    let base = format!("http://plain.test:{}", origin.port());

    let started = Instant::now();
    let responses = pipeline(
        proxy.addr(),
        &[get(&format!("{base}/hang")), get(&format!("{base}/ok"))],
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(responses.len(), 2, "{responses:#?}");
    assert_eq!(responses[0].status, 504);
    assert!(
        responses[0]
            .text()
            .contains(&format!("plain.test:{}", origin.port())),
        "{}",
        responses[0].text()
    );
    assert!(responses[0].text().contains("response_timeout_secs"));
    assert_eq!(responses[1].status, 200);
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    let admin = proxy.proxy.admin_addr.unwrap();
    let timeouts =
        r#"strictproxy_forward_errors_total{culprit="upstream",cause="response_timeout"}"#;
    assert_eq!(metric(admin, timeouts).await, 1.0);
    assert_eq!(
        logs.lines_with(&["culprit=\"upstream\"", "response_timeout"])
            .len(),
        1,
        "{}",
        logs.text()
    );
}

/// Item 10, the other side: the wait is timed from the end of the request body, so an upload
/// slower than the timeout is not cut off (nginx's `proxy_read_timeout` counts reads too).
#[tokio::test]
async fn a_slow_upload_is_not_a_response_timeout() {
    let origin = RawOrigin::start(|_| Reply::ok("stored")).await;
    let proxy = start_proxy(None, |o| o.response_timeout_secs = Some(1)).await;
    let url = format!("http://plain.test:{}/upload", origin.port());
    let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let mut conn = RawConn::new(stream);
    let head = format!("POST {url} HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 4\r\n\r\nab");
    conn.stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    conn.stream.write_all(b"cd").await.unwrap();
    let response = conn.read_response("POST").await.unwrap();
    assert_eq!(response.status, 200, "{response:#?}");
    assert_eq!(response.text(), "stored");
}

/// Item 11. RFC 9110 §15.2.2: a `101` to a request that asked for no upgrade (or one that does
/// not name the protocol asked for) is answered `502`; the client's connection and the request
/// pipelined behind it survive.
#[tokio::test]
async fn an_unsolicited_101_is_refused_and_the_connection_survives() {
    let logs = capture_logs();
    let origin = RawOrigin::start(|path| match path {
        "/switch" => Reply::BytesThenHold(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nRAW BYTES OF ANOTHER PROTOCOL"
                .to_vec(),
        ),
        "/switch-unnamed" => Reply::BytesThenHold(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n".to_vec(),
        ),
        _ => Reply::ok("ok"),
    })
    .await;
    let proxy = start_proxy(None, |_| {}).await;
    let base = format!("http://plain.test:{}", origin.port());
    let websocket = format!(
        "GET {base}/switch-unnamed HTTP/1.1\r\nHost: plain.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );

    let responses = pipeline(
        proxy.addr(),
        &[get(&format!("{base}/switch")), get(&format!("{base}/ok"))],
    )
    .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [502, 200], "{responses:#?}");
    assert!(responses[0].text().contains("RFC 9110 §15.2.2"));
    assert!(!responses[0].text().contains("RAW BYTES"));
    assert_eq!(responses[1].text(), "ok");

    // A WebSocket request whose 101 does not name websocket (RFC 9110 §7.8).
    let responses = pipeline(proxy.addr(), &[websocket, get(&format!("{base}/ok"))]).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [502, 200], "{responses:#?}");

    let admin = proxy.proxy.admin_addr.unwrap();
    let refused =
        r#"strictproxy_forward_errors_total{culprit="upstream",cause="unsolicited_upgrade"}"#;
    assert_eq!(metric(admin, refused).await, 2.0);
    assert_eq!(
        logs.lines_with(&["culprit=\"upstream\"", "unsolicited_upgrade"])
            .len(),
        2,
        "{}",
        logs.text()
    );
}

/// Item 12. A chunk size that is not hex (RFC 9112 §7.1) is the client's framing error: `400`,
/// the connection closed, and the log line and the metric blame the client, not the origin.
#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let logs = capture_logs();
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let url = format!("http://plain.test:{}/echo", origin.port());
    let request = format!(
        "POST {url} HTTP/1.1\r\nHost: plain.test\r\nTransfer-Encoding: chunked\r\n\r\n5g\r\nhello\r\n0\r\n\r\n"
    );
    let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let mut conn = RawConn::new(stream);
    conn.stream.write_all(request.as_bytes()).await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), conn.read_response("POST"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status, 400, "{response:#?}");
    assert!(
        response.text().contains("request body from the client")
            && response.text().contains("chunk size"),
        "{}",
        response.text()
    );
    assert!(!response.text().contains("upstream"), "{}", response.text());
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    assert!(conn.closed_within(Duration::from_secs(5)).await);

    let admin = proxy.proxy.admin_addr.unwrap();
    let client = r#"strictproxy_forward_errors_total{culprit="client",cause="request_body"}"#;
    assert_eq!(metric(admin, client).await, 1.0);
    let upstream = r#"strictproxy_upstream_errors_total{cause="protocol"}"#;
    assert_eq!(metric(admin, upstream).await, 0.0);
    let blamed = logs.lines_with(&["culprit=\"client\"", "request_body", "chunk size"]);
    assert_eq!(blamed.len(), 1, "{}", logs.text());
    assert!(
        logs.lines_with(&["culprit=\"upstream\""]).is_empty(),
        "{}",
        logs.text()
    );
    let records = proxy.records().await;
    assert_eq!(records.last().unwrap()["status"], 400);
}

/// Item 15. The leaf is only ever made for the name the upstream is verified for: a ClientHello
/// for b.test in a tunnel to a.test is refused (unrecognized_name, RFC 6066 §3), as is one for
/// a name in a tunnel to an IP; and a request inside a good a.test tunnel that names b.test is
/// `421 Misdirected Request` (RFC 9110 §15.5.20). Neither origin serves anything for them.
#[tokio::test]
async fn no_leaf_and_no_content_for_a_name_nobody_verified() {
    let logs = capture_logs();
    let ca_a = TestCa::with_names(&["a.test"]);
    let ca_b = TestCa::with_names(&["b.test"]);
    let origin_a = Origin::https_h1(&ca_a).await;
    let origin_b = Origin::https_h1(&ca_b).await;
    let proxy = start_proxy(Some(&ca_a), |o| {
        o.upstream_ca.push(ca_b.ca_pem_path.clone());
        o.resolve.push("a.test=127.0.0.1".into());
        o.resolve.push("b.test=127.0.0.1".into());
    })
    .await;
    let (port_a, port_b) = (origin_a.port(), origin_b.port());
    let tls =
        tokio_rustls::TlsConnector::from(common::trusting_proxy(&proxy, true, &[b"http/1.1"]));
    let name = |host: &str| rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();

    // CONNECT a.test with SNI b.test: refused with unrecognized_name, no certificate.
    for connect in [format!("a.test:{port_a}"), format!("127.0.0.1:{port_a}")] {
        let tunnel = common::open_tunnel(proxy.addr(), &connect).await;
        let err = tls.connect(name("b.test"), tunnel).await.err().unwrap();
        let alert = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .cloned();
        assert_eq!(
            alert,
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::UnrecognisedName
            )),
            "{connect}: {err}"
        );
    }
    assert_eq!(
        logs.lines_with(&["TLS server name b.test"]).len(),
        2,
        "{}",
        logs.text()
    );

    // CONNECT a.test with SNI a.test: served; then requests naming b.test on it are 421.
    let tunnel = common::open_tunnel(proxy.addr(), &format!("a.test:{port_a}")).await;
    let stream = tls.connect(name("a.test"), tunnel).await.unwrap();
    let mut conn = RawConn::new(stream);
    let requests = [
        format!("GET /first HTTP/1.1\r\nHost: a.test:{port_a}\r\n\r\n"),
        format!("GET /other-host HTTP/1.1\r\nHost: b.test:{port_b}\r\n\r\n"),
        format!("GET https://b.test:{port_b}/absolute HTTP/1.1\r\nHost: b.test:{port_b}\r\n\r\n"),
        format!("GET /other-port HTTP/1.1\r\nHost: a.test:{port_b}\r\n\r\n"),
        format!("GET /last HTTP/1.1\r\nHost: a.test:{port_a}\r\n\r\n"),
    ];
    let mut statuses = Vec::new();
    for request in &requests {
        conn.stream.write_all(request.as_bytes()).await.unwrap();
        let response = conn.read_response("GET").await.unwrap();
        if response.status == 421 {
            assert!(
                response.text().contains("b.test") || response.text().contains(&port_b.to_string())
            );
        }
        statuses.push(response.status);
    }
    assert_eq!(statuses, [200, 421, 421, 421, 200]);
    assert!(
        origin_b.seen().is_empty(),
        "b.test served through a tunnel to a.test"
    );
    let paths: Vec<String> = origin_a.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/first", "/last"]);
    let records = proxy.records().await;
    let misdirected = records.iter().filter(|r| r["status"] == 421).count();
    assert_eq!(misdirected, 3);
}

/// Item 15 over HTTP/2, where browsers coalesce connections: a request whose `:authority` is
/// another host than the tunnel's is `421`, so the browser retries it on a connection of its own.
#[tokio::test]
async fn an_h2_request_for_another_authority_is_misdirected() {
    use http_body_util::{BodyExt, Empty};
    let ca_a = TestCa::with_names(&["a.test"]);
    let origin_a = Origin::https(&ca_a).await;
    let proxy = start_proxy(Some(&ca_a), |o| {
        o.resolve.push("a.test=127.0.0.1".into());
        o.resolve.push("b.test=127.0.0.1".into());
    })
    .await;
    let port = origin_a.port();
    let tls = tokio_rustls::TlsConnector::from(common::trusting_proxy(&proxy, true, &[b"h2"]));
    let tunnel = common::open_tunnel(proxy.addr(), &format!("a.test:{port}")).await;
    let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
    let stream = tls.connect(name, tunnel).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);

    let mut statuses = Vec::new();
    for url in [
        format!("https://a.test:{port}/mine"),
        format!("https://b.test:{port}/coalesced"),
        format!("https://a.test:{port}/mine-again"),
    ] {
        let request = http::Request::get(url)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        statuses.push(response.status().as_u16());
        let _ = response.into_body().collect().await;
    }
    assert_eq!(statuses, [200, 421, 200]);
    let paths: Vec<String> = origin_a.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/mine", "/mine-again"]);
}
