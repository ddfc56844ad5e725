//! The upstream side: a connector that resolves (honouring `--resolve`), connects with a
//! timeout and `TCP_NODELAY`, and speaks verified TLS (webpki and platform roots plus every
//! `--upstream-ca`), which the pool (`super::pool`) opens connections with.
//!
//! A request is never sent over a connection whose certificate did not verify: rustls aborts
//! the handshake, and the error is classified here so the client gets a `502` that names the
//! certificate problem.
//!
//! What comes back (a refused head, a timeout, who failed) is classified in
//! [`super::outcome`].

use crate::hsts::host::normalize_target_host;
use crate::proxy::destination::{Destinations, Source, Verdict};
use crate::proxy::errors::Culprit;
use crate::proxy::resolve::{AddressBook, Resolve, SystemResolver};
use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
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
    #[error("`{host}` is not a valid host name (an empty label?)")]
    BadHost { host: String },
    #[error("{host} ({addr}) is not reachable through this proxy: {rule}")]
    Forbidden {
        host: String,
        addr: SocketAddr,
        rule: String,
    },
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
            UpstreamError::NoHost | UpstreamError::BadHost { .. } => "bad_request",
            UpstreamError::Forbidden { .. } => "forbidden",
        }
    }

    /// Whether the destination rules refused the address (answered `403`).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, UpstreamError::Forbidden { .. })
    }

    /// Whether the failure is a timeout (answered `504` rather than `502`).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout { .. } | UpstreamError::TlsTimeout { .. }
        )
    }

    /// Who failed: a URI without a host is the proxy's own doing (it builds the URI); every
    /// other failure to reach or trust an upstream is the upstream's.
    pub fn culprit(&self) -> Culprit {
        match self {
            UpstreamError::NoHost => Culprit::Proxy,
            _ => Culprit::Upstream,
        }
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

/// Where a host's connections go: the address book (IP literals, `localhost`, `--resolve`,
/// the hosts file), else DNS through the [`Resolve`] seam; every address is checked against
/// the destination rules that hold for every client before it is connected to.
#[derive(Clone)]
pub struct Resolver {
    book: Arc<AddressBook>,
    dns: Arc<dyn Resolve>,
    destinations: Arc<Destinations>,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::new(
            AddressBook::default(),
            Arc::new(SystemResolver),
            Destinations::default(),
        )
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("book", &self.book)
            .finish()
    }
}

impl Resolver {
    pub fn new(book: AddressBook, dns: Arc<dyn Resolve>, destinations: Destinations) -> Self {
        Resolver {
            book: Arc::new(book),
            dns,
            destinations: Arc::new(destinations),
        }
    }

    /// The override for `host`, if any (host normalized: lowercase, one trailing dot).
    pub fn override_for(&self, host: &str) -> Option<IpAddr> {
        self.book.override_for(host)
    }

    /// Every address to try for `host:port`, in order, each allowed by the destination rules
    /// (issue 11 items 1–2: the address actually connected to is what is checked).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, UpstreamError> {
        let (addrs, source) = match self.book.lookup_local(host) {
            Some((ips, source)) => (
                ips.into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect(),
                source,
            ),
            None => {
                // One spelling per host (issue 11 item 14): `known.test..` never reaches DNS
                // as `known.test`.
                let name = normalize_target_host(host).ok_or_else(|| UpstreamError::BadHost {
                    host: host.to_string(),
                })?;
                let addrs = self.dns.lookup(&name, port).await.map_err(|source| {
                    UpstreamError::Resolve {
                        host: host.to_string(),
                        source,
                    }
                })?;
                (addrs, Source::Dns)
            }
        };
        if addrs.is_empty() {
            return Err(UpstreamError::NoAddress {
                host: host.to_string(),
            });
        }
        for addr in &addrs {
            if let Verdict::Refuse(rule) = self.destinations.check(None, *addr, source) {
                return Err(UpstreamError::Forbidden {
                    host: host.to_string(),
                    addr: *addr,
                    rule: rule.to_string(),
                });
            }
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

impl UpstreamStream {
    /// The address connected to, for [`UpstreamPeer`].
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            UpstreamStream::Plain(tcp) => tcp.inner().peer_addr().ok(),
            UpstreamStream::Tls(tls) => tls.inner().get_ref().0.peer_addr().ok(),
        }
    }

    /// Whether TLS negotiated HTTP/2 by ALPN (plain connections speak HTTP/1.1).
    pub fn negotiated_h2(&self) -> bool {
        match self {
            UpstreamStream::Plain(_) => false,
            UpstreamStream::Tls(tls) => tls.inner().get_ref().1.alpn_protocol() == Some(b"h2"),
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

/// The connector the pool uses.
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

    /// Opens a connection to the URI's origin: TCP to a checked address, TLS for https.
    pub async fn connect(self, uri: Uri) -> Result<UpstreamStream, UpstreamError> {
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
        let mut map = std::collections::HashMap::new();
        map.insert("secure.test".to_string(), "127.0.0.1".parse().unwrap());
        let resolver = Resolver::new(
            AddressBook::new(&map, Default::default()),
            Arc::new(SystemResolver),
            Destinations::default(),
        );
        assert!(resolver.override_for("secure.test").is_some());
        assert!(resolver.override_for("Secure.TEST.").is_some());
        assert!(resolver.override_for("other.test").is_none());
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
