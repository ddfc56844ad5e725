//! The accept loop: one task per client connection, `TCP_NODELAY` on every socket, a cap on
//! concurrent connections (past it, a raw `503` and close, without stalling the loop), HTTP/1.1
//! and HTTP/2 served by hyper-util's auto builder, and graceful shutdown on a signal.

use crate::proxy::idle::IdleTimeout;
use crate::proxy::pipeline::{self, Entry};
use crate::proxy::{connect, respond, Shared};
use http::Method;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Accepts clients until `shutdown` turns true, then lets connections in flight finish for up
/// to the configured grace period.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!("accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%client, "connection limit ({}) reached: answering 503", shared.config.max_connections);
                    tokio::spawn(refuse(stream));
                    continue;
                };
                let service_shared = shared.clone();
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let shared = service_shared.clone();
                    async move {
                        let response = if req.method() == Method::CONNECT {
                            connect::handle(shared, client, req).await
                        } else {
                            pipeline::handle(shared, client, Entry::Listener, req).await
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let conn = shared
                    .server
                    .serve_connection_with_upgrades(
                        TokioIo::new(IdleTimeout::new(stream, shared.config.idle_timeout)),
                        service,
                    )
                    .into_owned();
                let conn = graceful.watch(conn);
                let metrics_shared = shared.clone();
                tokio::spawn(async move {
                    metrics_shared.metrics.connection_opened();
                    if let Err(err) = conn.await {
                        log_connection_error(client, err.as_ref());
                    }
                    metrics_shared.metrics.connection_closed();
                    drop(slot);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // Connections on the listener and in tunnels were told to stop (the tunnels watch the
    // same signal); both get the same deadline to finish what is in flight.
    let grace = shared.config.shutdown_grace;
    shared.tunnels.close();
    tracing::info!(
        "stopped accepting; draining requests in flight ({} tunnel(s) open, up to {} s)",
        shared.tunnels.len(),
        grace.as_secs()
    );
    let drained = async {
        graceful.shutdown().await;
        shared.tunnels.wait().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            "connections still open after {} s; closing them",
            grace.as_secs()
        );
    }
}

/// Answers a client over the connection cap and closes.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(respond::RAW_SERVICE_UNAVAILABLE).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Logs a connection's end: the benign ones (a client closing, a reset) quietly.
pub fn log_connection_error(client: SocketAddr, err: &(dyn std::error::Error + 'static)) {
    let benign = crate::proxy::errors::connection_dropped(err);
    if benign {
        tracing::trace!(%client, "connection ended: {err}");
    } else {
        tracing::debug!(%client, "connection error: {err}");
    }
}
