//! Misbehaving peers for the hostile-input tests, over real sockets on 127.0.0.1: a raw origin
//! that answers each request with exactly the bytes a test scripts (or never answers), a raw
//! client that pipelines requests on one connection and parses every response strictly (so a
//! wrong length shows as a wrong next response, as it would for a real client), and a capture
//! of the proxy's log lines, to check who it blamed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the raw origin does with one request.
pub enum Reply {
    /// Writes these bytes, then waits for the next request on the connection.
    Bytes(Vec<u8>),
    /// Writes these bytes, then holds the connection open without reading or answering more.
    BytesThenHold(Vec<u8>),
    /// Reads the request and never answers (the connection stays open).
    Silent,
}

impl Reply {
    /// A `200` with `body` and an exact Content-Length.
    pub fn ok(body: &str) -> Reply {
        Reply::Bytes(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}

/// An origin on raw sockets: every request (head plus a Content-Length body) is handed to the
/// script by path, and the script's reply is written as is.
pub struct RawOrigin {
    pub addr: SocketAddr,
    /// The request lines received, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
}

impl RawOrigin {
    pub async fn start(script: impl Fn(&str) -> Reply + Send + Sync + 'static) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let (seen, count) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (seen, script) = (seen.clone(), script.clone());
                tokio::spawn(async move {
                    let mut conn = RawConn::new(stream);
                    while let Some(head) = conn.read_head().await {
                        let line = head.lines().next().unwrap_or_default().to_string();
                        if let Some(length) = header_value(&head, "content-length") {
                            let length: usize = length.parse().unwrap_or(0);
                            if conn.read_exact_body(length).await.is_none() {
                                return;
                            }
                        }
                        seen.lock().unwrap().push(line.clone());
                        let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                        match script(&path) {
                            Reply::Bytes(bytes) => {
                                if conn.stream.write_all(&bytes).await.is_err() {
                                    return;
                                }
                            }
                            Reply::BytesThenHold(bytes) => {
                                let _ = conn.stream.write_all(&bytes).await;
                                std::future::pending::<()>().await;
                            }
                            Reply::Silent => std::future::pending::<()>().await,
                        }
                    }
                });
            }
        });
        RawOrigin {
            addr,
            requests,
            connections,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many requests for `path` arrived.
    pub fn count(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.split(' ').nth(1) == Some(path))
            .count()
    }
}

/// One response as a strict HTTP/1.1 client reads it.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value (the first), matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<String> {
        header_value(&self.head, name)
    }
}

/// A connection with a read buffer, parsing heads and bodies by the RFC 9112 §6.3 rules.
pub struct RawConn<S> {
    pub stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawConn<S> {
    pub fn new(stream: S) -> Self {
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes; false at EOF or on an error.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next head (up to the blank line), or None at EOF.
    pub async fn read_head(&mut self) -> Option<String> {
        loop {
            if let Some(end) = super::find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return Some(head);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn read_exact_body(&mut self, length: usize) -> Option<Vec<u8>> {
        while self.buf.len() < length {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..length).collect())
    }

    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = super::find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// A chunked body, decoded strictly (a bad size line is a test failure).
    async fn read_chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                // Trailers, up to the blank line.
                while !self.read_line().await?.is_empty() {}
                return Some(body);
            }
            body.extend(self.read_exact_body(size).await?);
            assert_eq!(self.read_line().await?, "", "chunk not followed by CRLF");
        }
    }

    /// Reads one response to a request of `method`; None when the connection ended first.
    pub async fn read_response(&mut self, method: &str) -> Option<RawResponse> {
        let head = self.read_head().await?;
        let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
        let bodiless = method == "HEAD" || status < 200 || status == 204 || status == 304;
        let body = if bodiless {
            Vec::new()
        } else if header_value(&head, "transfer-encoding").is_some() {
            assert!(
                header_value(&head, "content-length").is_none(),
                "a response with both Content-Length and Transfer-Encoding reached the client: {head}"
            );
            self.read_chunked().await?
        } else if let Some(length) = header_value(&head, "content-length") {
            self.read_exact_body(length.parse().ok()?).await?
        } else {
            while self.fill().await {}
            std::mem::take(&mut self.buf)
        };
        Some(RawResponse { status, head, body })
    }

    /// Whether the peer closes the connection (EOF, or a reset) within `limit`.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(limit, self.stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Writes every request at once on one connection (pipelining, RFC 9112 §9.3.2), then reads
/// the responses in order, strictly, stopping at the first that does not come (within 15 s).
pub async fn pipeline(proxy: SocketAddr, requests: &[String]) -> Vec<RawResponse> {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let mut conn = RawConn::new(stream);
    conn.stream
        .write_all(requests.concat().as_bytes())
        .await
        .unwrap();
    let mut responses = Vec::new();
    for request in requests {
        let method = request.split(' ').next().unwrap_or("GET");
        let next = tokio::time::timeout(Duration::from_secs(15), conn.read_response(method));
        match next.await {
            Ok(Some(response)) => responses.push(response),
            _ => break,
        }
    }
    responses
}

/// `GET url` in absolute form, as a client of a forward proxy sends it.
pub fn get(url: &str) -> String {
    let authority = url.split('/').nth(2).unwrap_or_default();
    format!("GET {url} HTTP/1.1\r\nHost: {authority}\r\n\r\n")
}

/// The first value of header `name` in a head, matched case-insensitively.
pub fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// The proxy's log lines, captured for the current thread (use a current-thread runtime, the
/// default of `#[tokio::test]`, so the proxy's tasks log here too).
pub struct LogCapture {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn capture_logs() -> LogCapture {
    capture_logs_with("info")
}

/// [`capture_logs`] with a filter in `RUST_LOG` syntax (`strictproxy::proxy::park=trace`).
pub fn capture_logs_with(filter: &str) -> LogCapture {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(lines.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .finish();
    LogCapture {
        lines,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap()).into_owned()
    }

    /// The log lines that contain every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_string)
            .collect()
    }
}

/// The value of one sample of the proxy's `/metrics` (0 when absent), e.g.
/// `strictproxy_forward_errors_total{culprit="client",cause="request_body"}`.
pub async fn metric(admin: SocketAddr, sample: &str) -> f64 {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(sample))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}
