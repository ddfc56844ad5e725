//! The upstream connection pool: hyper's own per-connection senders
//! (`hyper::client::conn::{http1, http2}`), kept per origin, instead of hyper-util's legacy
//! `Client`. The legacy client cost ~12,000 instructions of every request (issue 15): a
//! checkout future, three SipHash lookups in its pool, a spawned task per request to wait for
//! the connection to be idle again, and type-erased connection info. Here an HTTP/1.1
//! connection goes back to its origin's idle list when its response body has been read to the
//! end (the [`PooledBody`] does it), an HTTP/2 connection is shared by every request to its
//! origin, and both are dropped — which closes them — after `IDLE_TIMEOUT` unused.
//!
//! What the legacy client did that still matters is kept: a request that a reused connection
//! closed before sending is sent again on another one (hyper hands it back untouched), the
//! HTTP/1.1 target is sent in origin form, upgrades (WebSocket) work, and each response
//! carries the address that answered ([`UpstreamPeer`]).

use crate::proxy::body::ProxyBody;
use crate::proxy::upstream::{
    client_tls, Resolver, UpstreamConnector, UpstreamError, UpstreamPeer,
};
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long an idle connection is kept: shorter than the common server keep-alive (Apache and
/// Node.js close idle connections after 5 s), so the pool rarely hands out one the origin is
/// closing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Idle HTTP/1.1 connections kept per origin; more are closed when they come back.
pub const MAX_IDLE_PER_ORIGIN: usize = 256;
/// How many times a request a reused connection never sent is tried on another.
const MAX_UNSENT_RETRIES: usize = 3;

/// Why a request got no response from the pool.
#[derive(Debug, Error)]
pub enum PoolError {
    /// No connection: the connector's own error (DNS, refused, TLS, a forbidden address).
    // Not `transparent`: the classifiers find the `UpstreamError` (and, below, the
    // `hyper::Error`) by walking `source()`, which `transparent` would skip past.
    #[error("{0}")]
    Connect(#[from] UpstreamError),
    /// The connection was made but the HTTP handshake on it failed (HTTP/2 preface).
    #[error("the HTTP handshake with the upstream failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// The request was sent (or could not be) and the exchange failed.
    #[error("{0}")]
    Send(#[source] hyper::Error),
    /// The target had no authority (a bug in the caller: the router builds absolute URIs).
    #[error("the upstream URI {0} has no host")]
    NoAuthority(Uri),
}

impl PoolError {
    /// Whether no connection could be made at all (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(self, PoolError::Connect(_) | PoolError::NoAuthority(_))
    }
}

/// An origin: the connections to it are interchangeable.
#[derive(Clone, Debug)]
struct Origin {
    secure: bool,
    authority: Authority,
}

// By the authority's text as it is: the router writes it lowercase already, and `Authority`'s
// own case-insensitive `Hash` feeds the hasher a byte at a time (~2,500 instructions a request
// in SipHash for the pool's two lookups; issue 15). Two spellings of one origin would only
// make two idle lists.
impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.secure == other.secure && self.authority.as_str() == other.authority.as_str()
    }
}

impl Eq for Origin {}

impl std::hash::Hash for Origin {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.secure.hash(state);
        self.authority.as_str().hash(state);
    }
}

struct Idle {
    sender: http1::SendRequest<ProxyBody>,
    peer: Option<SocketAddr>,
    since: Instant,
}

impl Idle {
    /// Not idle too long, and not closed by its origin.
    fn usable(&self) -> bool {
        self.since.elapsed() < IDLE_TIMEOUT && !self.sender.is_closed()
    }
}

struct Shared2 {
    sender: http2::SendRequest<ProxyBody>,
    peer: Option<SocketAddr>,
}

#[derive(Default)]
struct Conns {
    /// HTTP/1.1 connections not in use, most recently used last.
    idle: HashMap<Origin, Vec<Idle>>,
    /// One HTTP/2 connection per origin, shared.
    h2: HashMap<Origin, Shared2>,
}

/// Upstream connections by origin. Cheap to share: clone the `Arc`.
pub struct Pool {
    connector: UpstreamConnector,
    conns: Mutex<Conns>,
}

fn lock(conns: &Mutex<Conns>) -> MutexGuard<'_, Conns> {
    // The maps hold senders only: a panic elsewhere leaves nothing half-updated.
    conns.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection taken for one request.
enum Taken {
    H1 {
        sender: http1::SendRequest<ProxyBody>,
        peer: Option<SocketAddr>,
        reused: bool,
    },
    H2 {
        sender: http2::SendRequest<ProxyBody>,
        peer: Option<SocketAddr>,
    },
}

impl Pool {
    /// A pool over `connector`; a task closes idle connections while the pool lives (must be
    /// called inside a tokio runtime).
    pub fn new(connector: UpstreamConnector) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            connector,
            conns: Mutex::new(Conns::default()),
        });
        tokio::spawn(sweep_idle(Arc::downgrade(&pool)));
        pool
    }

    /// Sends `req` (an absolute URI) to its origin on a pooled connection or a new one.
    pub async fn request(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, PoolError> {
        let origin = Origin {
            secure: req.uri().scheme() == Some(&http::uri::Scheme::HTTPS),
            authority: req
                .uri()
                .authority()
                .cloned()
                .ok_or_else(|| PoolError::NoAuthority(req.uri().clone()))?,
        };
        let absolute = req.uri().clone();
        let mut unsent_retries = 0;
        loop {
            let taken = match self.checkout(&origin).await {
                Some(taken) => taken,
                // Boxed: a connection's future (DNS, TCP, TLS handshake) is large, and
                // inline it would make every request's future — which hyper moves into its
                // own box per request — that much larger to copy (issue 15).
                None => Box::pin(self.connect(&origin, &absolute)).await?,
            };
            match taken {
                Taken::H2 { mut sender, peer } => {
                    *req.uri_mut() = absolute.clone();
                    // RFC 9113 §8.3.1: over HTTP/2 the authority travels as `:authority`
                    // (from the URI); a Host field beside it is refused by nginx as a
                    // duplicate (400), so it is not sent.
                    req.headers_mut().remove(http::header::HOST);
                    let mut response = sender.send_request(req).await.map_err(PoolError::Send)?;
                    if let Some(peer) = peer {
                        response.extensions_mut().insert(UpstreamPeer(peer));
                    }
                    return Ok(response.map(|body| PooledBody::new(body, None)));
                }
                Taken::H1 {
                    mut sender,
                    peer,
                    reused,
                } => {
                    // RFC 9112 §3.2.1: to an origin, the target is in origin form.
                    *req.uri_mut() = origin_form(&absolute);
                    match sender.try_send_request(req).await {
                        Ok(mut response) => {
                            if let Some(peer) = peer {
                                response.extensions_mut().insert(UpstreamPeer(peer));
                            }
                            // After a 101 the connection belongs to the upgrade.
                            let back =
                                (response.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| {
                                    Checkin {
                                        pool: Arc::downgrade(self),
                                        origin: origin.clone(),
                                        sender,
                                        peer,
                                    }
                                });
                            return Ok(response.map(|body| PooledBody::new(body, back)));
                        }
                        Err(mut failed) => match failed.take_message() {
                            // Closed under us before anything was written: send it again
                            // elsewhere, as the legacy client did (retry_canceled_requests).
                            Some(unsent) if reused && unsent_retries < MAX_UNSENT_RETRIES => {
                                unsent_retries += 1;
                                req = unsent;
                            }
                            _ => return Err(PoolError::Send(failed.into_error())),
                        },
                    }
                }
            }
        }
    }

    /// A live connection to `origin` if one is idle (or shared, for HTTP/2).
    async fn checkout(&self, origin: &Origin) -> Option<Taken> {
        loop {
            let candidate = {
                let mut conns = lock(&self.conns);
                if let Some(shared) = conns.h2.get(origin) {
                    if !shared.sender.is_closed() {
                        return Some(Taken::H2 {
                            sender: shared.sender.clone(),
                            peer: shared.peer,
                        });
                    }
                    conns.h2.remove(origin);
                }
                let list = conns.idle.get_mut(origin)?;
                let idle = list.pop();
                if list.is_empty() {
                    conns.idle.remove(origin);
                }
                idle?
            };
            if !candidate.usable() {
                continue;
            }
            let mut sender = candidate.sender;
            // Ready at once, or as soon as the connection has finished the previous exchange.
            if sender.ready().await.is_ok() {
                return Some(Taken::H1 {
                    sender,
                    peer: candidate.peer,
                    reused: true,
                });
            }
        }
    }

    /// A new connection to `origin`: HTTP/2 when TLS negotiated it, HTTP/1.1 otherwise.
    async fn connect(&self, origin: &Origin, uri: &Uri) -> Result<Taken, PoolError> {
        let stream = self.connector.clone().connect(uri.clone()).await?;
        let peer = stream.peer_addr();
        if stream.negotiated_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(stream)
                .await
                .map_err(PoolError::Handshake)?;
            tokio::spawn(async move {
                if let Err(err) = conn.await {
                    tracing::debug!("upstream HTTP/2 connection ended: {err}");
                }
            });
            lock(&self.conns).h2.insert(
                origin.clone(),
                Shared2 {
                    sender: sender.clone(),
                    peer,
                },
            );
            return Ok(Taken::H2 { sender, peer });
        }
        let (sender, conn) = http1::Builder::new()
            .handshake(stream)
            .await
            .map_err(PoolError::Handshake)?;
        tokio::spawn(async move {
            // With upgrades: a WebSocket handshake's connection is handed to the relay.
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!("upstream HTTP/1.1 connection ended: {err}");
            }
        });
        Ok(Taken::H1 {
            sender,
            peer,
            reused: false,
        })
    }

    /// Puts a connection whose exchange is over back in its origin's idle list.
    fn checkin(
        &self,
        origin: Origin,
        sender: http1::SendRequest<ProxyBody>,
        peer: Option<SocketAddr>,
    ) {
        if sender.is_closed() {
            return;
        }
        let mut conns = lock(&self.conns);
        let list = conns.idle.entry(origin).or_default();
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push(Idle {
                sender,
                peer,
                since: Instant::now(),
            });
        }
    }

    /// Drops the connections idle for `IDLE_TIMEOUT` or closed by their origin.
    fn sweep(&self) {
        let mut conns = lock(&self.conns);
        conns.idle.retain(|_, list| {
            list.retain(Idle::usable);
            !list.is_empty()
        });
        conns.h2.retain(|_, shared| !shared.sender.is_closed());
    }
}

async fn sweep_idle(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(IDLE_TIMEOUT / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.sweep(),
            None => return,
        }
    }
}

/// The origin form of an absolute URI: its path and query (`/` when empty).
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// What returns an HTTP/1.1 connection to the pool once its response has been read.
struct Checkin {
    pool: Weak<Pool>,
    origin: Origin,
    sender: http1::SendRequest<ProxyBody>,
    peer: Option<SocketAddr>,
}

impl Checkin {
    fn complete(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.checkin(self.origin, self.sender, self.peer);
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body from the pool. Read to its end, its connection goes back to the pool;
    /// dropped before, the connection is closed (what is left of the body cannot be skipped
    /// safely).
    pub struct PooledBody {
        #[pin]
        inner: Incoming,
        checkin: Option<Checkin>,
    }

    impl PinnedDrop for PooledBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if this.inner.is_end_stream() {
                if let Some(checkin) = this.checkin.take() {
                    checkin.complete();
                }
            }
        }
    }
}

impl PooledBody {
    fn new(inner: Incoming, checkin: Option<Checkin>) -> Self {
        PooledBody { inner, checkin }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(checkin) = this.checkin.take() {
                    checkin.complete();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                // A broken body: the connection is not reused.
                this.checkin.take();
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream connection pools.
#[derive(Clone)]
pub struct Upstream {
    /// Offers `h2` and `http/1.1` by ALPN: HTTP/2 when the origin speaks it.
    pub general: Arc<Pool>,
    /// HTTP/1.1 only, for WebSocket upgrades (RFC 6455 runs over an HTTP/1.1 upgrade).
    pub http1: Arc<Pool>,
    pub resolver: Resolver,
}

impl Upstream {
    /// Must be called inside a tokio runtime (each pool runs a task closing idle connections).
    pub fn new(
        resolver: Resolver,
        roots: Arc<rustls::RootCertStore>,
        connect_timeout: Duration,
        tls_timeout: Duration,
    ) -> Result<Self, rustls::Error> {
        let build = |alpn: &[&[u8]]| -> Result<_, rustls::Error> {
            Ok(Pool::new(UpstreamConnector::new(
                resolver.clone(),
                client_tls(roots.clone(), alpn)?,
                connect_timeout,
                tls_timeout,
            )))
        };
        Ok(Upstream {
            general: build(&[b"h2", b"http/1.1"])?,
            http1: build(&[b"http/1.1"])?,
            resolver,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_targets_are_sent_in_origin_form() {
        let table = [
            ("http://a.test/", "/"),
            ("http://a.test", "/"),
            ("https://a.test:8443/p/q?x=1&y", "/p/q?x=1&y"),
            ("http://[::1]:8080/?", "/?"),
        ];
        for (absolute, expected) in table {
            let uri: Uri = absolute.parse().unwrap();
            assert_eq!(origin_form(&uri).to_string(), expected, "{absolute}");
        }
    }

    #[test]
    fn the_classifiers_find_the_cause_inside() {
        let refused = PoolError::Connect(UpstreamError::Refused {
            host: "a.test".into(),
            port: 80,
        });
        let found = crate::proxy::upstream::upstream_error_of(&refused);
        assert_eq!(found.map(UpstreamError::cause), Some("refused"));
        assert_eq!(refused.to_string(), "connection to a.test:80 refused");
    }

    #[test]
    fn only_a_missing_connection_is_a_connect_error() {
        let no_host = PoolError::NoAuthority(Uri::from_static("/x"));
        assert!(no_host.is_connect());
        let refused = PoolError::Connect(UpstreamError::NoHost);
        assert!(refused.is_connect());
    }
}
