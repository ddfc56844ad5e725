//! The admin API, on its own loopback listener (never the proxy port), like Chromium's
//! net-internals HSTS page plus a Prometheus endpoint:
//!
//! - `GET /hsts` — every learned and manual entry (a JSON array)
//! - `GET /hsts/{host}` — `{"host", "enforced", "entry"}`, `entry` being the one that decided
//! - `PUT /hsts/{domain}` with `{"include_subdomains": bool, "max_age": seconds}` — a manual entry
//! - `DELETE /hsts/{domain}` — removes a learned or manual entry (404 when there is none)
//! - `GET /metrics` — Prometheus text format
//! - `GET /ca.pem` — the CA certificate to trust

use crate::hsts::store::{normalize_host, HstsStore};
use crate::proxy::body::{self, ProxyBody};
use crate::proxy::Shared;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest PUT body accepted: an entry is a few dozen bytes.
const MAX_BODY: usize = 16 * 1024;

/// Serves the admin API until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
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
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&shared, req).await) }
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutEntry {
    #[serde(default)]
    include_subdomains: bool,
    max_age: u64,
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<ProxyBody> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/hsts" | "/hsts/") => {
            json_response(StatusCode::OK, &shared.hsts.dynamic_entries())
        }
        (Method::GET, "/metrics") => {
            shared.metrics.sync_hsts_evictions(shared.hsts.evictions());
            let text = shared.metrics.render(
                shared.hsts.counts(),
                shared.interceptor.leaf_cache().hits(),
                shared.interceptor.leaf_cache().misses(),
            );
            let mut response = Response::new(body::full(text));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        (Method::GET, "/ca.pem") => {
            let mut response = Response::new(body::full(shared.ca_pem.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-pem-file"),
            );
            response
        }
        (method, path) if path.starts_with("/hsts/") => {
            // An internationalized name arrives percent-encoded (UTF-8) in the path.
            let raw = percent_encoding::percent_decode_str(&path["/hsts/".len()..])
                .decode_utf8_lossy()
                .into_owned();
            let Some(host) = normalize_host(&raw).map(|h| h.into_owned()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("`{raw}` is not a valid host name"),
                );
            };
            match method {
                Method::GET => {
                    json_response(StatusCode::OK, &host_status(shared.hsts.as_ref(), &host))
                }
                Method::PUT => put_entry(shared, &host, req).await,
                Method::DELETE => {
                    if shared.hsts.remove(&host) {
                        json_response(StatusCode::OK, &json!({"deleted": host}))
                    } else {
                        error(
                            StatusCode::NOT_FOUND,
                            &format!("no learned or manual HSTS entry for {host}"),
                        )
                    }
                }
                _ => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use GET, PUT or DELETE on /hsts/{host}",
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "no such admin endpoint; try /hsts, /hsts/{host}, /metrics, /ca.pem",
        ),
    }
}

/// `{"host", "enforced", "entry"}` for a normalized host: what `GET /hsts/{host}` and
/// `strictproxy hsts query` print. `entry` is the one that decided, maybe a superdomain's.
pub fn host_status(store: &dyn HstsStore, host: &str) -> serde_json::Value {
    let entry = store.lookup(host);
    json!({"host": host, "enforced": entry.is_some(), "entry": entry})
}

async fn put_entry(shared: &Shared, host: &str, req: Request<Incoming>) -> Response<ProxyBody> {
    let bytes: Bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {err}"),
            )
        }
    };
    let entry: PutEntry = match serde_json::from_slice(&bytes) {
        Ok(entry) => entry,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"include_subdomains\": bool, \"max_age\": seconds}}: {err}"),
            )
        }
    };
    match shared
        .hsts
        .add_manual(host, entry.include_subdomains, entry.max_age)
    {
        Ok(entry) => json_response(StatusCode::OK, &entry),
        Err(err) => error(StatusCode::BAD_REQUEST, &err.to_string()),
    }
}

fn json_response<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
) -> Response<ProxyBody> {
    let text = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    json_response(status, &json!({ "error": message }))
}
