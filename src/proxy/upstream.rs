//! The upstream side: a connector that resolves (honouring `--resolve`), connects with a
//! timeout and `TCP_NODELAY`, and speaks verified TLS (webpki and platform roots plus every
//! `--upstream-ca`), and the pooled hyper clients built on it.
//!
//! A request is never sent over a connection whose certificate did not verify: rustls aborts
//! the handshake, and the error is classified here so the client gets a `502` that names the
//! certificate problem.
//!
//! The response side is classified here too: [`check_response_head`] refuses heads that must
//! not be relayed, [`response_within`] bounds the wait for a head, and [`ForwardError`] says
//! who failed an exchange (client, upstream or proxy).

use crate::proxy::body::ProxyBody;
use crate::proxy::errors::{self, Culprit};
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Why the proxy could not reach or trust an upstream.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("connection to {host}:{port} refused")]
    Refused { host: String, port: u16 },
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: io::Error,
    },
    #[error("connecting to {host}:{port} timed out after {secs} s")]
    ConnectTimeout { host: String, port: u16, secs: u64 },
    #[error("the certificate of {host} is not acceptable: {problem}")]
    Certificate { host: String, problem: String },
    #[error("TLS handshake with {host} failed: {source}")]
    Tls { host: String, source: io::Error },
    #[error("TLS handshake with {host} timed out after {secs} s")]
    TlsTimeout { host: String, secs: u64 },
    #[error("`{host}` is not a valid server name for TLS")]
    BadServerName { host: String },
    #[error("request URI has no host")]
    NoHost,
}

impl UpstreamError {
    /// A short, stable label for metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            UpstreamError::Resolve { .. } | UpstreamError::NoAddress { .. } => "dns",
            UpstreamError::Refused { .. } => "refused",
            UpstreamError::Connect { .. } => "unreachable",
            UpstreamError::ConnectTimeout { .. } | UpstreamError::TlsTimeout { .. } => "timeout",
            UpstreamError::Certificate { .. } => "certificate",
            UpstreamError::Tls { .. } | UpstreamError::BadServerName { .. } => "tls",
            UpstreamError::NoHost => "bad_request",
        }
    }

    /// Whether the failure is a timeout (answered `504` rather than `502`).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout { .. } | UpstreamError::TlsTimeout { .. }
        )
    }
}

/// Why a forwarded request got no usable response, and who is to blame: the status the client
/// gets, the `culprit`/`cause` of the log line and the metric labels all come from here.
#[derive(Debug, Error)]
pub enum ForwardError {
    /// The client's request body broke its framing (RFC 9112 §7.1: a chunk size that is not
    /// hex) or was cut short: the client's error, answered `400`, and its connection closed.
    #[error("{0}")]
    ClientBody(#[from] crate::proxy::body::ClientBodyError),
    /// The upstream could not be reached or trusted (the connector's own error, rendered).
    #[error("{message}")]
    Unavailable {
        message: String,
        cause: &'static str,
        timeout: bool,
        culprit: Culprit,
    },
    /// The request went out but no response head came back in time (`response_timeout_secs`).
    #[error("upstream {authority} sent no response within {secs} s of the request (response_timeout_secs)")]
    ResponseTimeout { authority: String, secs: u64 },
    /// The response head is unusable (see [`check_response_head`]).
    #[error("upstream {authority} sent an unusable response: {problem}")]
    BadResponse {
        authority: String,
        problem: HeadProblem,
    },
    /// Any other failure of the upstream exchange (a protocol error, a reset).
    #[error("upstream {authority} failed: {detail}")]
    Protocol { authority: String, detail: String },
}

impl ForwardError {
    /// Classifies a failure of the upstream client. `client_body` is the client body's own
    /// record of failing: an HTTP/2 upstream reports only a stream reset, not the body error.
    pub fn of_client_error(
        err: &(dyn std::error::Error + 'static),
        authority: &str,
        client_body: Option<&str>,
    ) -> ForwardError {
        if let Some(detail) = client_body {
            return crate::proxy::body::ClientBodyError::new(detail.to_string()).into();
        }
        if let Some(body) = errors::find::<crate::proxy::body::ClientBodyError>(err) {
            return crate::proxy::body::ClientBodyError::new(body.detail.clone()).into();
        }
        if let Some(cause) = upstream_error_of(err) {
            return ForwardError::Unavailable {
                message: cause.to_string(),
                cause: cause.cause(),
                timeout: cause.is_timeout(),
                culprit: errors::culprit_of(err),
            };
        }
        ForwardError::Protocol {
            authority: authority.to_string(),
            detail: errors::error_chain(err),
        }
    }

    /// Who failed.
    pub fn culprit(&self) -> Culprit {
        match self {
            ForwardError::ClientBody(_) => Culprit::Client,
            ForwardError::Unavailable { culprit, .. } => *culprit,
            ForwardError::ResponseTimeout { .. }
            | ForwardError::BadResponse { .. }
            | ForwardError::Protocol { .. } => Culprit::Upstream,
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            ForwardError::ClientBody(_) => "request_body",
            ForwardError::Unavailable { cause, .. } => cause,
            ForwardError::ResponseTimeout { .. } => "response_timeout",
            ForwardError::BadResponse { problem, .. } => problem.cause(),
            ForwardError::Protocol { .. } => "protocol",
        }
    }

    /// Whether the answer is a `504` (the upstream was too slow) rather than a `502`.
    pub fn is_timeout(&self) -> bool {
        match self {
            ForwardError::Unavailable { timeout, .. } => *timeout,
            ForwardError::ResponseTimeout { .. } => true,
            _ => false,
        }
    }
}

/// What makes a response head unusable, so the proxy answers `502` instead of relaying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum HeadProblem {
    /// RFC 9112 §6.3 (3): Transfer-Encoding overrides Content-Length, and a message with both
    /// "ought to be handled as an error" — it is how responses are split and requests smuggled.
    /// An intermediary may instead drop Content-Length and forward; like nginx (since 1.23.0)
    /// and Envoy, the proxy refuses it, so nothing ambiguous reaches the client.
    #[error("it has both Content-Length and Transfer-Encoding (RFC 9112 §6.3), an ambiguous length refused as nginx and Envoy do")]
    AmbiguousLength,
    /// RFC 9110 §15.2.2: a server must not switch to a protocol the request did not ask for in
    /// its Upgrade field; relayed, the `101` would take the client's connection (and the
    /// requests pipelined on it) into a protocol nobody agreed on.
    #[error("101 Switching Protocols to a request that asked for no upgrade (RFC 9110 §15.2.2)")]
    UnsolicitedUpgrade,
    /// RFC 9110 §7.8: a `101` must name the protocol switched to, and it must be the one asked.
    #[error("101 Switching Protocols without `Upgrade: websocket` (RFC 9110 §7.8)")]
    UpgradeMismatch,
}

impl HeadProblem {
    pub fn cause(self) -> &'static str {
        match self {
            HeadProblem::AmbiguousLength => "ambiguous_length",
            HeadProblem::UnsolicitedUpgrade | HeadProblem::UpgradeMismatch => "unsolicited_upgrade",
        }
    }
}

/// Checks a response head before it is relayed. `websocket` is whether the request asked for a
/// WebSocket upgrade; `bodiless` whether the response has no body whatever its fields say (a
/// HEAD request, `1xx`, `204`, `304`: RFC 9112 §6.3 (1)), where the length fields frame nothing.
pub fn check_response_head(
    websocket: bool,
    bodiless: bool,
    status: http::StatusCode,
    headers: &http::HeaderMap,
) -> Result<(), HeadProblem> {
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        if !websocket {
            return Err(HeadProblem::UnsolicitedUpgrade);
        }
        let names_websocket = headers
            .get_all(http::header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("websocket"));
        return if names_websocket {
            Ok(())
        } else {
            Err(HeadProblem::UpgradeMismatch)
        };
    }
    let both = headers.contains_key(http::header::TRANSFER_ENCODING)
        && headers.contains_key(http::header::CONTENT_LENGTH);
    if both && !bodiless {
        return Err(HeadProblem::AmbiguousLength);
    }
    Ok(())
}

/// Runs `request` (the upstream client's future, which resolves at the response head) and gives
/// up `timeout` after the request body has been sent — `sent` resolves then (its sender is
/// dropped when the body ends). Timing from the end of the body, like nginx's
/// `proxy_read_timeout`, keeps a slow upload from counting against the origin. `None` when
/// the time ran out; the request is dropped then, which closes its upstream connection.
pub async fn response_within<F: Future>(
    request: F,
    sent: tokio::sync::oneshot::Receiver<()>,
    timeout: Duration,
) -> Option<F::Output> {
    let deadline = async move {
        let _ = sent.await;
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        biased;
        output = request => Some(output),
        () = deadline => None,
    }
}

/// Why the upstream TLS trust store could not be built.
#[derive(Debug, Error)]
pub enum TrustError {
    #[error("cannot read upstream CA file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("upstream CA file {path} holds no PEM certificate")]
    Empty { path: PathBuf },
    #[error("upstream CA file {path}: certificate rejected: {message}")]
    Rejected { path: PathBuf, message: String },
}

/// Where a host's connections go: the `--resolve` overrides, else the system resolver.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    overrides: Arc<HashMap<String, IpAddr>>,
}

impl Resolver {
    pub fn new(overrides: HashMap<String, IpAddr>) -> Self {
        Resolver {
            overrides: Arc::new(overrides),
        }
    }

    /// The override for `host`, if any (host compared lowercase, without a trailing dot).
    pub fn override_for(&self, host: &str) -> Option<IpAddr> {
        if self.overrides.is_empty() {
            return None;
        }
        let host = host.trim_end_matches('.');
        self.overrides
            .get(host)
            .or_else(|| self.overrides.get(&host.to_ascii_lowercase()))
            .copied()
    }

    /// Every address to try for `host:port`, in order.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, UpstreamError> {
        if let Some(ip) = self.override_for(host) {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|source| UpstreamError::Resolve {
                host: host.to_string(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(UpstreamError::NoAddress {
                host: host.to_string(),
            });
        }
        Ok(addrs)
    }

    /// Connects to `host:port`, trying each address in turn, with `TCP_NODELAY` set (without
    /// it, small writes wait for Nagle's algorithm and each new connection stalls ~40 ms).
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<TcpStream, UpstreamError> {
        let addrs = self.resolve(host, port).await?;
        let mut last = None;
        for addr in addrs {
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(source)) if source.kind() == io::ErrorKind::ConnectionRefused => {
                    last = Some(UpstreamError::Refused {
                        host: host.to_string(),
                        port,
                    })
                }
                Ok(Err(source)) => {
                    last = Some(UpstreamError::Connect {
                        host: host.to_string(),
                        port,
                        source,
                    })
                }
                Err(_) => {
                    last = Some(UpstreamError::ConnectTimeout {
                        host: host.to_string(),
                        port,
                        secs: timeout.as_secs(),
                    })
                }
            }
        }
        Err(last.unwrap_or(UpstreamError::NoAddress {
            host: host.to_string(),
        }))
    }
}

/// Builds the root store for upstream verification: Mozilla's roots (webpki-roots), the
/// platform's store when it can be read, and every `--upstream-ca` file.
pub fn root_store(extra: &[PathBuf]) -> Result<rustls::RootCertStore, TrustError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A malformed platform certificate is the platform's problem, not a reason to stop.
        let _ = roots.add(cert);
    }
    for path in extra {
        add_pem_file(&mut roots, path)?;
    }
    Ok(roots)
}

fn add_pem_file(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), TrustError> {
    let data = std::fs::read(path).map_err(|source| TrustError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut count = 0;
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&data) {
        let cert = cert.map_err(|e| TrustError::Rejected {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TrustError::Rejected {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(TrustError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Builds the TLS client configuration for upstream connections with the given ALPN list.
pub fn client_tls(
    roots: Arc<rustls::RootCertStore>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    // Offer AES-128-GCM first, as browsers do: origins pick it, and it is the cheapest suite
    // on CPUs with AES instructions (SHA-384 has no fast path on some of them).
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let provider = Arc::new(provider);
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The address an upstream connection reached, put in each response's extensions so the
/// record can say which server answered (HAR's `serverIPAddress`).
#[derive(Clone, Copy, Debug)]
pub struct UpstreamPeer(pub SocketAddr);

/// A connection to an upstream, plain or TLS.
pub enum UpstreamStream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        let (connected, peer) = match self {
            UpstreamStream::Plain(tcp) => (Connected::new(), tcp.inner().peer_addr()),
            UpstreamStream::Tls(tls) => {
                let (tcp, session) = tls.inner().get_ref();
                let connected = if session.alpn_protocol() == Some(b"h2") {
                    Connected::new().negotiated_h2()
                } else {
                    Connected::new()
                };
                (connected, tcp.peer_addr())
            }
        };
        match peer {
            Ok(peer) => connected.extra(UpstreamPeer(peer)),
            Err(_) => connected,
        }
    }
}

impl hyper::rt::Read for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            UpstreamStream::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(io) => Pin::new(io).poll_write(cx, buf),
            UpstreamStream::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(io) => Pin::new(io).poll_flush(cx),
            UpstreamStream::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(io) => Pin::new(io).poll_shutdown(cx),
            UpstreamStream::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(io) => io.is_write_vectored(),
            UpstreamStream::Tls(io) => io.is_write_vectored(),
        }
    }
}

/// The connector the pooled clients use.
#[derive(Clone)]
pub struct UpstreamConnector {
    resolver: Resolver,
    tls: TlsConnector,
    connect_timeout: Duration,
    tls_timeout: Duration,
}

impl UpstreamConnector {
    pub fn new(
        resolver: Resolver,
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
        tls_timeout: Duration,
    ) -> Self {
        UpstreamConnector {
            resolver,
            tls: TlsConnector::from(tls),
            connect_timeout,
            tls_timeout,
        }
    }

    async fn connect(self, uri: Uri) -> Result<UpstreamStream, UpstreamError> {
        let host = uri.host().ok_or(UpstreamError::NoHost)?.to_string();
        let secure = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tcp = self
            .resolver
            .connect(&host, port, self.connect_timeout)
            .await?;
        if !secure {
            return Ok(UpstreamStream::Plain(TokioIo::new(tcp)));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|_| UpstreamError::BadServerName { host: host.clone() })?;
        let handshake = self.tls.connect(name, tcp);
        match tokio::time::timeout(self.tls_timeout, handshake).await {
            Ok(Ok(tls)) => Ok(UpstreamStream::Tls(Box::new(TokioIo::new(tls)))),
            Ok(Err(err)) => Err(classify_tls_error(&host, err)),
            Err(_) => Err(UpstreamError::TlsTimeout {
                host,
                secs: self.tls_timeout.as_secs(),
            }),
        }
    }
}

/// Turns a failed handshake into a certificate error when rustls rejected the certificate.
fn classify_tls_error(host: &str, err: io::Error) -> UpstreamError {
    let rustls_error = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(problem)) => UpstreamError::Certificate {
            host: host.to_string(),
            problem: describe_certificate_error(problem),
        },
        _ => UpstreamError::Tls {
            host: host.to_string(),
            source: err,
        },
    }
}

fn describe_certificate_error(problem: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match problem {
        E::UnknownIssuer => "it is signed by an unknown issuer (not trusted; add its CA with --upstream-ca FILE if it is yours)".to_string(),
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "it is not valid for this host name".to_string()
        }
        E::Expired | E::ExpiredContext { .. } => "it has expired".to_string(),
        E::NotValidYet | E::NotValidYetContext { .. } => "it is not valid yet".to_string(),
        E::Revoked => "it has been revoked".to_string(),
        E::BadSignature => "its signature is invalid".to_string(),
        E::BadEncoding => "it is malformed".to_string(),
        other => format!("{other:?}"),
    }
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamStream;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamStream, UpstreamError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// The pooled upstream clients.
#[derive(Clone)]
pub struct Upstream {
    /// Offers `h2` and `http/1.1` by ALPN: HTTP/2 when the origin speaks it.
    pub general: Client<UpstreamConnector, ProxyBody>,
    /// HTTP/1.1 only, for WebSocket upgrades (RFC 6455 runs over an HTTP/1.1 upgrade).
    pub http1: Client<UpstreamConnector, ProxyBody>,
    pub resolver: Resolver,
}

impl Upstream {
    pub fn new(
        resolver: Resolver,
        roots: Arc<rustls::RootCertStore>,
        connect_timeout: Duration,
        tls_timeout: Duration,
    ) -> Result<Self, rustls::Error> {
        let build = |alpn: &[&[u8]]| -> Result<_, rustls::Error> {
            let connector = UpstreamConnector::new(
                resolver.clone(),
                client_tls(roots.clone(), alpn)?,
                connect_timeout,
                tls_timeout,
            );
            Ok(Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                // Shorter than the common server keep-alive (Apache and Node.js close idle
                // connections after 5 s), so the pool rarely hands out one the origin is closing.
                .pool_idle_timeout(Duration::from_secs(4))
                .pool_max_idle_per_host(256)
                .build(connector))
        };
        Ok(Upstream {
            general: build(&[b"h2", b"http/1.1"])?,
            http1: build(&[b"http/1.1"])?,
            resolver,
        })
    }
}

/// Finds the connector's own error inside a client error, if the failure was ours.
pub fn upstream_error_of<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a UpstreamError> {
    crate::proxy::errors::find::<UpstreamError>(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_case_and_dot_insensitive() {
        let mut map = HashMap::new();
        map.insert("secure.test".to_string(), "127.0.0.1".parse().unwrap());
        let resolver = Resolver::new(map);
        assert!(resolver.override_for("secure.test").is_some());
        assert!(resolver.override_for("Secure.TEST.").is_some());
        assert!(resolver.override_for("other.test").is_none());
    }

    #[test]
    fn response_heads() {
        use http::StatusCode as S;
        let ws = [("upgrade", "websocket"), ("connection", "upgrade")];
        let both = [("transfer-encoding", "chunked"), ("content-length", "40")];
        // (asked websocket, bodiless, status, fields, verdict)
        type Row<'a> = (
            bool,
            bool,
            S,
            &'a [(&'a str, &'a str)],
            Result<(), HeadProblem>,
        );
        let rows: [Row; 10] = [
            (false, false, S::OK, &[("content-length", "5")], Ok(())),
            (
                false,
                false,
                S::OK,
                &[("transfer-encoding", "chunked")],
                Ok(()),
            ),
            // RFC 9112 §6.3 (3): both is ambiguous; refused like nginx ≥ 1.23 and Envoy.
            (
                false,
                false,
                S::OK,
                &both,
                Err(HeadProblem::AmbiguousLength),
            ),
            (
                false,
                false,
                S::NOT_FOUND,
                &both,
                Err(HeadProblem::AmbiguousLength),
            ),
            // RFC 9112 §6.3 (1): no body whatever the fields say, so nothing to mis-frame.
            (false, true, S::OK, &both, Ok(())),
            // RFC 9110 §15.2.2: no Upgrade asked, no switch.
            (
                false,
                false,
                S::SWITCHING_PROTOCOLS,
                &ws,
                Err(HeadProblem::UnsolicitedUpgrade),
            ),
            (
                false,
                true,
                S::SWITCHING_PROTOCOLS,
                &[],
                Err(HeadProblem::UnsolicitedUpgrade),
            ),
            // RFC 9110 §7.8: the 101 names the protocol, and it is the one asked for.
            (
                true,
                false,
                S::SWITCHING_PROTOCOLS,
                &[],
                Err(HeadProblem::UpgradeMismatch),
            ),
            (
                true,
                false,
                S::SWITCHING_PROTOCOLS,
                &[("upgrade", "h2c")],
                Err(HeadProblem::UpgradeMismatch),
            ),
            (true, false, S::SWITCHING_PROTOCOLS, &ws, Ok(())),
        ];
        for (websocket, bodiless, status, fields, verdict) in rows {
            let mut headers = http::HeaderMap::new();
            for (name, value) in fields {
                headers.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(value).unwrap(),
                );
            }
            assert_eq!(
                check_response_head(websocket, bodiless, status, &headers),
                verdict,
                "{websocket} {bodiless} {status} {fields:?}"
            );
        }
    }

    #[test]
    fn forward_errors_say_who_failed() {
        let client_body: ForwardError =
            crate::proxy::body::ClientBodyError::new("invalid chunk size".into()).into();
        let timeout = ForwardError::ResponseTimeout {
            authority: "slow.test".into(),
            secs: 1,
        };
        let framing = ForwardError::BadResponse {
            authority: "a.test".into(),
            problem: HeadProblem::AmbiguousLength,
        };
        let refused = UpstreamError::Refused {
            host: "a.test".into(),
            port: 80,
        };
        let unavailable = ForwardError::of_client_error(&refused, "a.test", None);
        let blamed_on_client = ForwardError::of_client_error(&refused, "a.test", Some("bad chunk"));
        // (error, culprit, cause, timeout)
        let rows = [
            (&client_body, Culprit::Client, "request_body", false),
            (&blamed_on_client, Culprit::Client, "request_body", false),
            (&timeout, Culprit::Upstream, "response_timeout", true),
            (&framing, Culprit::Upstream, "ambiguous_length", false),
            (&unavailable, Culprit::Upstream, "refused", false),
        ];
        for (err, culprit, cause, is_timeout) in rows {
            assert_eq!(err.culprit(), culprit, "{err}");
            assert_eq!(err.cause(), cause, "{err}");
            assert_eq!(err.is_timeout(), is_timeout, "{err}");
        }
        assert!(timeout.to_string().contains("slow.test"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_response_wait_starts_when_the_body_is_sent() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // The body is still being sent after 10 s: no timeout yet.
        let slow_upload = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(tx);
            std::future::pending::<()>().await
        };
        let started = tokio::time::Instant::now();
        let outcome = response_within(slow_upload, rx, Duration::from_secs(1)).await;
        assert!(outcome.is_none());
        assert_eq!(started.elapsed().as_secs(), 11);
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let quick = response_within(async { 7 }, rx, Duration::from_secs(1)).await;
        assert_eq!(quick, Some(7));
    }

    #[tokio::test]
    async fn refused_is_named() {
        // Bind then drop to get a port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = Resolver::default()
            .connect("127.0.0.1", port, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(err.cause(), "refused");
        assert!(err.to_string().contains("refused"));
    }
}
