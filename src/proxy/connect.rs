//! CONNECT (RFC 9110 §9.3.6): a blind tunnel for `--passthrough` hosts, interception for
//! every other host. Interception reads the ClientHello, mints (or reuses) a leaf for the SNI
//! name — the CONNECT host when there is no SNI — and serves the decrypted requests through
//! the same pipeline as plain ones. A tunnel whose first bytes are plain HTTP (some clients
//! tunnel http:// through CONNECT) is served as plain HTTP, with HSTS applied.
//!
//! A leaf is only ever presented for the name the upstream connection is verified for: the
//! CONNECT host. A ClientHello whose SNI names another host is refused, and so is a request
//! inside an intercepted tunnel whose authority names another origin (see [`sni_decision`]
//! and [`misdirected`]).

use crate::ca::leaf_name;
use crate::hsts::host::normalize_target_host;
use crate::proxy::body::ProxyBody;
use crate::proxy::errors::log_connection_error;
use crate::proxy::exchange::Exchange;
use crate::proxy::head_timeout::HeadTimeout;
use crate::proxy::park;
use crate::proxy::pipeline;
use crate::proxy::prefixed::Prefixed;
use crate::proxy::respond;
use crate::proxy::route::{ConnectTarget, Ingress};
use crate::proxy::state::{Recorder, Shared};
use crate::traffic::Action;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

/// Opens the tunnel of a CONNECT the router admitted. `exchange` is the CONNECT's own,
/// finished exactly once: with the refusal, when the blind tunnel closes, or when the
/// intercepted tunnel closes.
pub async fn open(
    shared: Arc<Shared>,
    mut exchange: Exchange,
    target: ConnectTarget,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let client = exchange.client;
    // The exchange lives as long as the tunnel; its copy of the CONNECT's fields would keep
    // hyper's whole read buffer of the client connection (8–16 KiB) alive through them.
    exchange.request_headers = detached(&exchange.request_headers);
    let ConnectTarget {
        host,
        port,
        authority,
        passthrough,
    } = target;
    // The same for the authority the tunnel keeps (parsed from the head, it shares hyper's
    // buffer): a copy of its own.
    let authority = authority.as_str().parse::<Authority>().unwrap_or(authority);
    let span = tracing::Span::current();

    if passthrough {
        // Connect before answering, so a dead upstream gets a 502 that says why instead of
        // a 200 followed by a closed tunnel.
        let upstream = shared
            .upstream
            .resolver
            .connect(&host, port, shared.config.connect_timeout)
            .await;
        return match upstream {
            Ok(stream) => {
                exchange.server_ip = stream.peer_addr().ok().map(|peer| peer.ip());
                let on_upgrade = hyper::upgrade::on(req);
                let shared2 = shared.clone();
                let task = async move {
                    match on_upgrade.await {
                        Ok(upgraded) => {
                            tunnel(&shared2.recorder, exchange, TokioIo::new(upgraded), stream)
                                .await
                        }
                        Err(err) => {
                            tracing::debug!("CONNECT upgrade failed: {err}");
                            exchange.finish(&shared2.recorder, 200, Action::Tunnel, 0);
                        }
                    }
                };
                shared.tunnels.spawn(task.instrument(span));
                respond::connect_established()
            }
            Err(err) => {
                shared.recorder.metrics.upstream_error(err.cause());
                let culprit = err.culprit();
                shared
                    .recorder
                    .metrics
                    .forward_error(culprit.as_str(), err.cause());
                exchange.answer(
                    &shared.recorder,
                    respond::upstream_unavailable(&err),
                    Action::Error,
                )
            }
        };
    }

    // The router checked what is known without DNS; a name only DNS answers is resolved now,
    // so a CONNECT into the admin API or a rebinding answer is refused before the tunnel
    // opens (issue 11 items 1–2). Other failures are left to the requests inside, whose 502
    // names them.
    if let Err(err) = shared.upstream.resolver.resolve(&host, port).await {
        if err.is_forbidden() {
            return exchange.answer(
                &shared.recorder,
                respond::upstream_unavailable(&err),
                Action::Error,
            );
        }
    }

    let on_upgrade = hyper::upgrade::on(req);
    let tunnels = shared.tunnels.clone();
    let task = async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                intercept(shared, client, host, authority, TokioIo::new(upgraded)).await
            }
            Err(err) => tracing::debug!("CONNECT upgrade failed: {err}"),
        }
        exchange.close_intercepted();
    };
    tunnels.spawn(task.instrument(span));
    respond::connect_established()
}

/// `headers` with every value in its own allocation: a value hyper parsed shares the buffer
/// the head was read into.
fn detached(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut owned = http::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut copy =
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        owned.append(name.clone(), copy);
    }
    owned
}

/// Copies bytes both ways until either side closes; logs one `tunnel` record.
async fn tunnel<C>(recorder: &Recorder, exchange: Exchange, mut client: C, mut upstream: TcpStream)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (sent, received) = match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok(counts) => counts,
        Err(err) => {
            tracing::debug!(url = %exchange.url, "tunnel ended: {err}");
            (0, 0)
        }
    };
    exchange.request_bytes.store(sent, Ordering::Relaxed);
    exchange.finish(recorder, 200, Action::Tunnel, received);
}

/// Reads the first byte of the tunnel and serves it as TLS (intercepted) or plain HTTP.
async fn intercept<I>(
    shared: Arc<Shared>,
    client: SocketAddr,
    host: String,
    authority: Authority,
    mut io: I,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut first = [0u8; 1];
    let read = tokio::time::timeout(shared.config.tls_handshake_timeout, io.read(&mut first)).await;
    match read {
        Ok(Ok(1)) => {}
        Ok(Ok(_)) => return, // the client closed the tunnel without a word
        Ok(Err(err)) => {
            tracing::debug!(%client, %authority, "tunnel read failed: {err}");
            return;
        }
        Err(_) => {
            tracing::debug!(%client, %authority, "client sent nothing on the tunnel in time");
            return;
        }
    }
    let io = Prefixed::new(first.to_vec(), io);
    match first[0] {
        // A TLS record of type handshake (RFC 8446 §5.1).
        0x16 => intercept_tls(shared, client, host, authority, io).await,
        // An HTTP method starts with an upper-case letter (RFC 9110 §9.1 tokens in practice).
        b'A'..=b'Z' => serve_inner(shared, client, authority, false, io).await,
        other => {
            tracing::warn!(
                %client,
                %authority,
                "CONNECT {authority}: the client sent neither TLS nor HTTP (first byte 0x{other:02x}); closing the tunnel"
            );
        }
    }
}

async fn intercept_tls<I>(
    shared: Arc<Shared>,
    client: SocketAddr,
    host: String,
    authority: Authority,
    io: I,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Boxed: the handshake's state (the ClientHello acceptor, the handshake in flight) is freed
    // when it ends, instead of sizing the tunnel's task for the tunnel's whole life; and the
    // TLS stream (rustls' connection state, ~1.3 KiB) is boxed once rather than moved through
    // every future that serves it.
    let handshake = Box::pin(tls_handshake(&shared, client, &host, &authority, io));
    if let Some(tls) = handshake.await {
        serve_inner(shared, client, authority, true, tls).await;
    }
}

/// The TLS handshake with the client under a leaf for the CONNECT host; `None` when it failed
/// (logged and counted here).
async fn tls_handshake<I>(
    shared: &Shared,
    client: SocketAddr,
    host: &str,
    authority: &Authority,
    io: I,
) -> Option<Box<tokio_rustls::server::TlsStream<I>>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = shared.config.tls_handshake_timeout;
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match tokio::time::timeout(timeout, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(err)) => {
            shared.recorder.metrics.tls_handshake("failed");
            tracing::debug!(%client, %authority, "unreadable ClientHello: {err}");
            return None;
        }
        Err(_) => {
            shared.recorder.metrics.tls_handshake("timeout");
            tracing::debug!(%client, %authority, "ClientHello not received in time");
            return None;
        }
    };
    let name = match sni_decision(host, start.client_hello().server_name()) {
        Ok(name) => name,
        Err(mismatch) => {
            shared.recorder.metrics.tls_handshake("sni_mismatch");
            tracing::warn!(%client, %authority, culprit = "client", "{mismatch}; refusing the TLS handshake");
            // RFC 6066 §3: a server that does not recognize the name may abort the handshake
            // with a fatal unrecognized_name alert; the record is plaintext before any key.
            let mut io = start.io;
            let _ = io.write_all(&UNRECOGNIZED_NAME_ALERT).await;
            let _ = io.shutdown().await;
            return None;
        }
    };
    let config = match shared.interceptor.server_config(&name) {
        Ok(config) => config,
        Err(err) => {
            shared.recorder.metrics.tls_handshake("failed");
            tracing::error!(%client, %name, "cannot mint a certificate for {name}: {err}");
            return None;
        }
    };
    match tokio::time::timeout(timeout, start.into_stream(config)).await {
        Ok(Ok(tls)) => {
            shared.recorder.metrics.tls_handshake("ok");
            Some(Box::new(tls))
        }
        Ok(Err(err)) => {
            if rejected_our_ca(&err) {
                shared.recorder.metrics.tls_handshake("untrusted_ca");
                tracing::warn!(
                    %client,
                    %name,
                    "the client rejected the certificate strictproxy made for {name}: it does not trust the strictproxy CA. Install it: `strictproxy ca export > strictproxy-ca.pem` and trust that file (see README), or open http://strictproxy.local/ through the proxy; or add `--passthrough {host}` to leave this host uninspected"
                );
            } else {
                shared.recorder.metrics.tls_handshake("failed");
                tracing::debug!(%client, %name, "TLS handshake with the client failed: {err}");
            }
            None
        }
        Err(_) => {
            shared.recorder.metrics.tls_handshake("timeout");
            tracing::debug!(%client, %name, "TLS handshake with the client timed out");
            None
        }
    }
}

/// A TLS record (type alert, TLS 1.2 record version, length 2) holding a fatal (2)
/// unrecognized_name (112) alert, RFC 8446 §6 and RFC 6066 §3.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// A ClientHello naming another host than the CONNECT.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("CONNECT {connect_host} with TLS server name {sni}: the upstream is verified as {connect_host} only, so no certificate for {sni} is made")]
pub struct SniMismatch {
    pub connect_host: String,
    pub sni: String,
}

/// The name to mint a leaf for, given the CONNECT host and the ClientHello's SNI.
///
/// The upstream connection is made to, and its certificate verified for, the CONNECT host;
/// a leaf for any other name would vouch for content nobody verified came from that name
/// (`CONNECT a.test` + SNI `b.test` would show a.test's content under a CA-signed b.test).
/// mitmproxy instead verifies the upstream as the SNI name while connecting to the CONNECT
/// address; the upstream client here pools by origin, so a mismatch is refused instead, as
/// Squid's `host_verify_strict` does for a Host that does not match the intercepted address.
/// Names compare by the proxy's one normalizer; no SNI (an IP literal, or an old client) means
/// the CONNECT host.
pub fn sni_decision(connect_host: &str, sni: Option<&str>) -> Result<String, SniMismatch> {
    match sni.filter(|sni| !sni.is_empty()) {
        None => Ok(leaf_name(None, connect_host)),
        Some(sni) if same_host(connect_host, sni) => Ok(leaf_name(Some(sni), connect_host)),
        Some(sni) => Err(SniMismatch {
            connect_host: leaf_name(None, connect_host),
            sni: leaf_name(Some(sni), connect_host),
        }),
    }
}

/// Whether two spellings name the same host, by the proxy's one normalizer (case, punycode,
/// one trailing dot, IP literal forms); a spelling it refuses matches nothing.
fn same_host(a: &str, b: &str) -> bool {
    match (normalize_target_host(a), normalize_target_host(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Why a request inside an intercepted tunnel to `tunnel` names another origin, if it does:
/// its authority (absolute-form or HTTP/2 `:authority`, else `Host`) has another host, or an
/// explicit port other than the tunnel's. The client's TLS session was made for the tunnel's
/// host only, so such a request is answered `421 Misdirected Request` (RFC 9110 §15.5.20),
/// which browsers that coalesced connections retry on a connection of its own.
pub fn misdirected(
    tunnel: &Authority,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Option<String> {
    let named = match uri.authority() {
        Some(authority) => authority.clone(),
        None => headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Authority>().ok())?,
    };
    let same_host = same_host(named.host(), tunnel.host());
    let same_port = named
        .port_u16()
        .is_none_or(|port| Some(port) == tunnel.port_u16());
    if same_host && same_port {
        None
    } else {
        Some(format!(
            "this connection is for {tunnel}, and the request names {named}; open a connection (CONNECT) to {named} for it"
        ))
    }
}

/// Whether a failed handshake is the client refusing our certificate (alerts a client sends
/// when the issuer is unknown: unknown_ca from OpenSSL/NSS/rustls, bad_certificate and
/// certificate_unknown from others).
fn rejected_our_ca(err: &std::io::Error) -> bool {
    use rustls::AlertDescription as A;
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => matches!(
            alert,
            A::UnknownCA | A::BadCertificate | A::CertificateUnknown | A::AccessDenied
        ),
        _ => false,
    }
}

/// Serves the requests inside a tunnel (HTTP/1.1 or HTTP/2, chosen by ALPN/preface).
async fn serve_inner<I>(
    shared: Arc<Shared>,
    client: SocketAddr,
    authority: Authority,
    secure: bool,
    io: I,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ingress = Ingress::Tunnel {
        authority: authority.clone(),
        secure,
    };
    let service_shared = shared.clone();
    // The slowloris guard reads the plaintext: inside TLS, a head's bytes are only seen here.
    let (io, head) = HeadTimeout::new(io, shared.config.header_read_timeout);
    let head_watch = head.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        head.head_received(req.version());
        let head = head.clone();
        let method = req.method().clone();
        let shared = service_shared.clone();
        let ingress = ingress.clone();
        // The leaf was made for the tunnel's host: nothing else is served under it.
        let wrong_origin = secure
            .then(|| misdirected(&authority, req.uri(), req.headers()))
            .flatten();
        async move {
            if let Some(reason) = wrong_origin {
                let exchange = Exchange::begin(client, req.method().clone(), req.uri().to_string());
                tracing::warn!(target: "strictproxy::forward", %client, culprit = "client", "{reason}");
                let response = exchange.answer(
                    &shared.recorder,
                    respond::misdirected(&reason),
                    Action::Error,
                );
                return Ok::<_, Infallible>(head.track(&method, response));
            }
            let response = pipeline::handle(shared, client, ingress, req).await;
            Ok::<_, Infallible>(head.track(&method, response))
        }
    });
    let watch = head_watch;
    if let Err(err) = park::serve(&shared, io, watch, service).await {
        log_connection_error(client, err.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_only_for_the_connect_host() {
        // (CONNECT host, SNI, leaf name or refused)
        let rows: [(&str, Option<&str>, Option<&str>); 8] = [
            ("a.test", Some("a.test"), Some("a.test")),
            // DNS names compare case-insensitively (RFC 4343); one trailing dot is the same name.
            ("a.test", Some("A.Test"), Some("a.test")),
            ("a.test.", Some("a.test"), Some("a.test")),
            // No SNI (an IP literal, RFC 6066 §3; or an old client): the CONNECT host.
            ("a.test", None, Some("a.test")),
            ("127.0.0.1", None, Some("127.0.0.1")),
            // Domain fronting: the leaf would vouch for b.test with a.test's content.
            ("a.test", Some("b.test"), None),
            // The upstream at an IP is verified for the IP, not for the name.
            ("127.0.0.1", Some("a.test"), None),
            // One normalizer: a second trailing dot is an empty label, no match.
            ("a.test", Some("a.test.."), None),
        ];
        for (host, sni, expected) in rows {
            let decided = sni_decision(host, sni);
            assert_eq!(decided.as_deref().ok(), expected, "{host} {sni:?}");
        }
        let err = sni_decision("a.test", Some("b.test")).unwrap_err();
        assert!(err.to_string().contains("b.test"));
    }

    #[test]
    fn requests_for_another_origin_are_misdirected() {
        let tunnel: Authority = "a.test:8443".parse().unwrap();
        // (request target, Host field, misdirected)
        let rows: [(&str, Option<&str>, bool); 10] = [
            ("/", Some("a.test:8443"), false),
            ("/", Some("A.TEST:8443"), false),
            // No explicit port: the client names the host; the tunnel already fixed the port.
            ("/", Some("a.test"), false),
            ("/", None, false),
            ("https://a.test:8443/x", None, false),
            // RFC 9110 §15.5.20: another host on this connection is misdirected.
            ("/", Some("b.test:8443"), true),
            ("https://b.test:8443/x", Some("a.test:8443"), true),
            ("https://b.test/x", None, true),
            // Another port is another origin (RFC 6454 §4).
            ("/", Some("a.test:9443"), true),
            ("/", Some("a.test.:8443"), false),
        ];
        for (target, host, expected) in rows {
            let uri: http::Uri = target.parse().unwrap();
            let mut headers = http::HeaderMap::new();
            if let Some(host) = host {
                headers.insert(http::header::HOST, host.parse().unwrap());
            }
            assert_eq!(
                misdirected(&tunnel, &uri, &headers).is_some(),
                expected,
                "{target} {host:?}"
            );
        }
    }
}
