//! The admin listener (`--admin ADDR`, loopback only, never the proxy port): the web console
//! and the JSON API it and scripts use, like Chromium's net-internals plus mitmweb.
//!
//! - `GET /` — the web console (HTML, CSS and JS embedded in the binary: [`console`])
//! - `GET /events` — Server-Sent Events, `event: exchange` with one JSON record each ([`events`])
//! - `GET /exchanges?limit=N` — the newest N records of the ring, newest first
//! - `GET /findings` — finding counts by kind and by host since start
//! - `GET /hsts` — every learned and manual entry (a JSON array); with `q`, `offset` or `limit`
//!   a page of them `{"total", "offset", "limit", "entries", "counts"}`
//! - `GET /hsts/{host}` — `{"host", "enforced", "entry"}`, `entry` being the one that decided
//! - `PUT /hsts/{domain}` with `{"include_subdomains": bool, "max_age": seconds}` — a manual entry
//! - `DELETE /hsts/{domain}` — removes a learned or manual entry (404 when there is none)
//! - `GET /metrics` — Prometheus text format
//! - `GET /ca.pem`, `GET /ca.crt` — the CA certificate to trust; `GET /ca` — its fingerprint
//!   and the install steps
//!
//! Every request first passes [`guard::check`] (Host, Origin, JSON for writes). The admin takes
//! only what it serves ([`AdminContext`]), never the proxy's internals.

pub mod api;
pub mod console;
pub mod events;
pub mod guard;

pub use api::host_status;

use crate::feed::Feed;
use crate::hsts::store::HstsStore;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The body of every admin response (fixed, or the event stream).
pub type AdminBody = UnsyncBoxBody<Bytes, Infallible>;

/// Renders the `/metrics` text at scrape time; whoever owns the counters provides it.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

pub use crate::ca::CaMaterial;

/// Everything the admin listener serves, and nothing more.
#[derive(Clone)]
pub struct AdminContext {
    /// The address the admin listener is bound to (the real port when 0 was asked for): the
    /// only Host and Origin it answers.
    pub addr: SocketAddr,
    pub hsts: Arc<dyn HstsStore>,
    /// The operator's `--hsts-exempt` patterns, so `/hsts/{host}` can say why a host is not
    /// enforced.
    pub exemptions: crate::hsts::exempt::Exemptions,
    pub metrics: RenderMetrics,
    pub ca: CaMaterial,
    /// The ring of recent exchanges and their broadcast.
    pub feed: Feed,
}

/// Serves the admin listener until the task is aborted.
pub async fn serve(listener: TcpListener, ctx: AdminContext) {
    let ctx = Arc::new(ctx);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!("admin accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(err) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "admin connection ended: {err}");
            }
        });
    }
}

/// The guard, then the route.
pub async fn handle(ctx: &AdminContext, req: Request<Incoming>) -> Response<AdminBody> {
    if let Err(refusal) = guard::check(req.method(), req.uri(), req.headers(), ctx.addr) {
        tracing::warn!(target: "strictproxy::admin", method = %req.method(), path = req.uri().path(), "refused: {refusal}");
        return error(refusal.status(), &refusal.to_string());
    }
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (
            http::Method::GET | http::Method::HEAD,
            "/" | "/index.html" | "/console.css" | "/console.js",
        ) => console::asset(&path),
        (http::Method::GET, "/events") => events::stream(ctx, &req),
        _ => api::route(ctx, req, &path).await,
    }
}

/// A fixed body.
pub fn full(bytes: impl Into<Bytes>) -> AdminBody {
    Full::new(bytes.into()).boxed_unsync()
}

/// A response with a fixed body and its content type.
pub fn with_type(content_type: &'static str, bytes: impl Into<Bytes>) -> Response<AdminBody> {
    let mut response = Response::new(full(bytes));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The admin's answers are live state: never cached by the browser.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn json_response<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
) -> Response<AdminBody> {
    let text = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    let mut response = with_type("application/json", text);
    *response.status_mut() = status;
    response
}

pub fn error(status: StatusCode, message: &str) -> Response<AdminBody> {
    json_response(status, &json!({ "error": message }))
}
