//! Idle client connections are parked (issue 15, item 3: `proxy::park`): a connection that
//! has sent nothing, or waits between requests for longer than `park::PARK_AFTER`, holds its
//! socket and nothing of hyper's. From outside nothing changes: these tests drive the
//! in-process proxy over real sockets on 127.0.0.1 across the park and back.

mod common;

use common::*;
use std::time::{Duration, Instant};
use strictproxy::config::Config;
use strictproxy::proxy::park::PARK_AFTER;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than a park takes to happen (one to two `PARK_AFTER` periods after the last read).
fn past_park() -> Duration {
    PARK_AFTER * 2 + Duration::from_millis(500)
}

/// A proxy with these limits and timeouts (keys `Overrides` lacks).
async fn start_with_toml(toml: &str) -> TestProxy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strictproxy.toml");
    std::fs::write(&path, toml).unwrap();
    let o = overrides(dir.path(), None);
    let traffic_log = o.traffic_log.clone().unwrap();
    let config = Config::load(Some(&path), &o).unwrap();
    let proxy = strictproxy::server::start(config).await.unwrap();
    TestProxy {
        proxy,
        dir,
        traffic_log,
    }
}

/// Counts the proxy's "connection parked" trace lines (on this thread: `#[tokio::test]`'s
/// current-thread runtime runs the proxy's tasks here too).
struct Parks(hostile::LogCapture);

impl Parks {
    fn watch() -> Parks {
        Parks(hostile::capture_logs_with("strictproxy::proxy::park=trace"))
    }

    fn count(&self) -> usize {
        self.0.text().matches("connection parked").count()
    }
}

async fn response(conn: &mut hostile::RawConn<TcpStream>) -> hostile::RawResponse {
    tokio::time::timeout(Duration::from_secs(10), conn.read_response("GET"))
        .await
        .expect("no response within 10 s")
        .expect("the proxy closed the connection instead of answering")
}

#[tokio::test]
async fn a_new_connection_whose_first_byte_comes_late_is_served_and_kept_alive() {
    let parks = Parks::watch();
    let origin = Origin::http().await;
    let proxy = start_with_toml("header_read_timeout_secs = 2\nidle_timeout_secs = 30\n").await;
    let base = format!("http://origin.test:{}", origin.port());
    let mut conn = hostile::RawConn::new(TcpStream::connect(proxy.addr()).await.unwrap());
    // Silent past the park delay, then a head whose bytes come in three writes: the first
    // byte alone (it wakes the parked connection), the rest of the line, the end.
    tokio::time::sleep(past_park()).await;
    let request = hostile::get(&format!("{base}/late"));
    let (first, rest) = request.split_at(1);
    let (middle, end) = rest.split_at(rest.len() / 2);
    for part in [first, middle, end] {
        conn.stream.write_all(part.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = response(&mut conn).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "GET /late 0\n");
    // The same connection parks again between requests and serves the next one.
    tokio::time::sleep(past_park()).await;
    conn.stream
        .write_all(hostile::get(&format!("{base}/again")).as_bytes())
        .await
        .unwrap();
    assert_eq!(response(&mut conn).await.status, 200);
    assert_eq!(origin.count("/late"), 1);
    assert_eq!(origin.count("/again"), 1);
    assert_eq!(
        parks.count(),
        1,
        "the wait between the two requests did not park"
    );
}

#[tokio::test]
async fn an_intercepted_tls_connection_parks_between_requests_and_serves_the_next() {
    let parks = Parks::watch();
    let ca = TestCa::new();
    let origin = Origin::https_h1(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    let o = overrides(dir.path(), Some(&ca));
    let proxy = start_proxy_in(dir, o).await;
    let authority = format!("secure.test:{}", origin.port());
    let stream = open_tunnel(proxy.addr(), &authority).await;
    let connector = tokio_rustls::TlsConnector::from(trusting_proxy(&proxy, true, &[b"http/1.1"]));
    let tls = connector
        .connect("secure.test".try_into().unwrap(), stream)
        .await
        .unwrap();
    let mut conn = hostile::RawConn::new(tls);
    for path in ["/one", "/two", "/three"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        conn.stream.write_all(request.as_bytes()).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), conn.read_response("GET"))
            .await
            .expect("no response within 10 s")
            .expect("the tunnel closed instead of answering");
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.text(), format!("GET {path} 0\n"));
        if path != "/three" {
            tokio::time::sleep(past_park()).await;
        }
    }
    assert_eq!(parks.count(), 2, "the intercepted connection did not park");
}

#[tokio::test]
async fn a_parked_connection_is_still_closed_by_the_idle_timeout_and_a_late_head_by_the_guard() {
    let origin = Origin::http().await;
    let proxy = start_with_toml("header_read_timeout_secs = 1\nidle_timeout_secs = 4\n").await;
    let base = format!("http://origin.test:{}", origin.port());

    // Never a byte: parked from the start, closed at the idle timeout.
    let mut silent = hostile::RawConn::new(TcpStream::connect(proxy.addr()).await.unwrap());
    let start = Instant::now();
    assert!(silent.closed_within(Duration::from_secs(10)).await);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(3900) && elapsed < Duration::from_secs(7),
        "a silent connection closed after {elapsed:?}, expected the 4 s idle timeout"
    );

    // Parked between requests, then half a head: the guard runs from that head's first byte.
    let mut conn = hostile::RawConn::new(TcpStream::connect(proxy.addr()).await.unwrap());
    conn.stream
        .write_all(hostile::get(&format!("{base}/first")).as_bytes())
        .await
        .unwrap();
    assert_eq!(response(&mut conn).await.status, 200);
    tokio::time::sleep(past_park()).await;
    conn.stream
        .write_all(format!("GET {base}/stalled HTTP/1.1\r\nHost: origin.test\r\n").as_bytes())
        .await
        .unwrap();
    let start = Instant::now();
    assert!(conn.closed_within(Duration::from_secs(10)).await);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "a stalled head after a park was cut after {elapsed:?}, expected the 1 s head guard"
    );
    assert_eq!(origin.count("/stalled"), 0);
}

#[tokio::test]
async fn a_response_the_client_reads_slowly_is_delivered_whole_before_any_park() {
    let origin = Origin::http().await;
    let proxy = start_with_toml("idle_timeout_secs = 30\n").await;
    let base = format!("http://origin.test:{}", origin.port());
    let mut conn = hostile::RawConn::new(TcpStream::connect(proxy.addr()).await.unwrap());
    // 8 MiB: more than the socket buffers hold, so the proxy waits on the client to read
    // while the request is long over; it must not park with the response half sent.
    let size = 8 << 20;
    conn.stream
        .write_all(hostile::get(&format!("{base}/big/{size}")).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(past_park() * 2).await;
    let big = response(&mut conn).await;
    assert_eq!(big.status, 200);
    assert_eq!(big.body.len(), size);
    tokio::time::sleep(past_park()).await;
    conn.stream
        .write_all(hostile::get(&format!("{base}/after")).as_bytes())
        .await
        .unwrap();
    assert_eq!(response(&mut conn).await.status, 200);
}

#[tokio::test]
async fn pipelined_requests_and_a_parked_neighbour_do_not_disturb_each_other() {
    let origin = Origin::http().await;
    let proxy = start_with_toml("idle_timeout_secs = 30\n").await;
    let base = format!("http://origin.test:{}", origin.port());
    let mut parked = hostile::RawConn::new(TcpStream::connect(proxy.addr()).await.unwrap());
    parked
        .stream
        .write_all(hostile::get(&format!("{base}/p0")).as_bytes())
        .await
        .unwrap();
    assert_eq!(response(&mut parked).await.status, 200);
    tokio::time::sleep(past_park()).await;
    // Two requests in one write on the parked connection (RFC 9112 §9.3.2), answered in order.
    let two = [
        hostile::get(&format!("{base}/p1")),
        hostile::get(&format!("{base}/p2")),
    ];
    parked
        .stream
        .write_all(two.concat().as_bytes())
        .await
        .unwrap();
    assert_eq!(response(&mut parked).await.text(), "GET /p1 0\n");
    assert_eq!(response(&mut parked).await.text(), "GET /p2 0\n");
}

#[tokio::test]
async fn shutdown_closes_parked_connections_without_waiting_out_the_grace_period() {
    let origin = Origin::http().await;
    let proxy = start_with_toml("idle_timeout_secs = 30\nshutdown_grace_secs = 20\n").await;
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    conn.write_all(hostile::get(&format!("http://origin.test:{}/x", origin.port())).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(conn.read(&mut buf).await.unwrap() > 0);
    let _silent = TcpStream::connect(proxy.addr()).await.unwrap();
    tokio::time::sleep(past_park()).await;
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), proxy.proxy.shutdown())
        .await
        .expect("shutdown waited on parked connections");
    assert!(start.elapsed() < Duration::from_secs(5));
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a parked connection outlived the proxy"
    );
}

#[tokio::test]
async fn a_pipelined_head_begun_during_a_response_is_not_cut_by_a_park() {
    let origin = Origin::http().await;
    let proxy = start_with_toml("idle_timeout_secs = 30\nheader_read_timeout_secs = 30\n").await;
    let base = format!("http://origin.test:{}", origin.port());
    let mut conn = hostile::RawConn::new(TcpStream::connect(proxy.addr()).await.unwrap());
    // A big response the client does not read yet, and the start of the next head behind it:
    // the proxy reads those bytes while the first exchange is in flight.
    let size = 8 << 20;
    let next = hostile::get(&format!("{base}/next"));
    let (begun, rest) = next.split_at(20);
    conn.stream
        .write_all(hostile::get(&format!("{base}/big/{size}")).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.stream.write_all(begun.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let big = response(&mut conn).await;
    assert_eq!(big.body.len(), size);
    // Idle past a park with half a head buffered: the rest must still make a request.
    tokio::time::sleep(past_park()).await;
    conn.stream.write_all(rest.as_bytes()).await.unwrap();
    let answer = response(&mut conn).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "GET /next 0\n");
}
