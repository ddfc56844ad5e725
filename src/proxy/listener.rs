//! The accept loop: one task per client connection, `TCP_NODELAY` on every socket, a cap on
//! concurrent connections (past it, a raw `503` and close, without stalling the loop), HTTP/1.1
//! and HTTP/2 served behind the idle timeout and the slowloris guard, parked while idle
//! ([`crate::proxy::park`]), and graceful shutdown on a signal.

use crate::proxy::connect;
use crate::proxy::errors::log_connection_error;
use crate::proxy::head_timeout::HeadTimeout;
use crate::proxy::idle::IdleTimeout;
use crate::proxy::park;
use crate::proxy::pipeline::{self, Begun};
use crate::proxy::respond;
use crate::proxy::route::{Decision, Ingress};
use crate::proxy::state::Shared;
use hyper::service::service_fn;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

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
                let conn_span = tracing::info_span!("conn", %client);
                let service_shared = shared.clone();
                let (io, head) = HeadTimeout::new(
                    IdleTimeout::new(stream, shared.config.idle_timeout),
                    shared.config.header_read_timeout,
                );
                let watch = head.clone();
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    head.head_received(req.version());
                    let head = head.clone();
                    let method = req.method().clone();
                    let shared = service_shared.clone();
                    let Begun { exchange, decision, span } =
                        pipeline::begin(&shared, client, &Ingress::Listener, &req);
                    async move {
                        let response = match decision {
                            Decision::Connect(target) => {
                                connect::open(shared, exchange, target, req).await
                            }
                            decision => pipeline::run(shared, exchange, decision, req).await,
                        };
                        Ok::<_, Infallible>(head.track(&method, response))
                    }
                    // The exchange span was opened inside the connection's span (the service
                    // is called from the connection task), so it names the client too.
                    .instrument(span)
                });
                // Held for the connection's life, so shutdown waits for it; the connection
                // itself watches `shared.stopping` (it may be parked, with no hyper
                // connection to signal).
                let watcher = graceful.watcher();
                let task_shared = shared.clone();
                tokio::spawn(async move {
                    task_shared.recorder.metrics.connection_opened();
                    if let Err(err) = park::serve(&task_shared, io, watch, service).await {
                        log_connection_error(client, err.as_ref());
                    }
                    task_shared.recorder.metrics.connection_closed();
                    drop(slot);
                    drop(watcher);
                }.instrument(conn_span));
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
