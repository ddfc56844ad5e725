//! The `h2` mode: HTTP/2 over TLS, many concurrent streams on few connections, as a browser
//! loads a page's resources. Each connection (direct to the origin, or through the proxy's
//! CONNECT tunnel with TLS inside) must negotiate `h2` by ALPN; `--streams` tasks share its
//! sender, each sending a GET and reading the whole body, back to back, until the deadline.
//! A connection the server ends (GOAWAY, reset) is counted as an error and opened again.

use crate::{elapsed_us, Opts, Plan, Tally, ALPN_H2};
use bytes::Bytes;
use h2::client::SendRequest;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One stream slot: GETs one after another on `sender`'s connection until the deadline or
/// until the connection fails (returned as `Err` after being counted).
async fn stream_worker(
    mut sender: SendRequest<Bytes>,
    uri: http::Uri,
    deadline: Instant,
) -> (Tally, Result<(), ()>) {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let start = Instant::now();
        let result = async {
            sender = sender.clone().ready().await?;
            let request = http::Request::get(uri.clone())
                .header(http::header::USER_AGENT, "strictproxy-loadgen")
                .body(())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let (response, _) = sender.send_request(request, true)?;
            let response = response.await?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut bytes = 0u64;
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                bytes += chunk.len() as u64;
                // Give the window back at once, as a browser does while it reads.
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, bytes))
        }
        .await;
        match result {
            Ok((status, bytes)) => {
                tally.latencies_us.push(elapsed_us(start));
                tally.body_bytes += bytes;
                if status >= 400 {
                    tally.error(|| format!("status {status}"));
                }
            }
            Err(err) => {
                tally.error(|| format!("h2 request: {err}"));
                return (tally, Err(()));
            }
        }
    }
    (tally, Ok(()))
}

/// One connection slot: opens an h2 connection, runs `streams` workers on it, opens a new one
/// if it failed before the deadline. Returns the tally and the server's stream limit.
async fn connection(plan: Arc<Plan>, id: usize, streams: usize) -> (Tally, usize) {
    let mut tally = Tally::default();
    let mut max_streams = 0;
    let host = plan.host(id);
    let uri: http::Uri = match format!("https://{host}:{}{}", plan.url.port, plan.url.path).parse()
    {
        Ok(uri) => uri,
        Err(err) => {
            tally.error(|| format!("bad URL: {err}"));
            return (tally, 0);
        }
    };
    while Instant::now() < plan.deadline {
        let opened = async {
            let (stream, _, alpn) = plan.open_stream(&host).await.map_err(|e| e.to_string())?;
            if alpn.as_deref() != Some(b"h2") {
                let alpn = alpn.map(|a| String::from_utf8_lossy(&a).into_owned());
                return Err(format!("the server chose ALPN {alpn:?}, not h2"));
            }
            let (sender, conn) = h2::client::Builder::new()
                // Windows large enough that 100 small responses never wait for an update.
                .initial_window_size(1 << 20)
                .initial_connection_window_size(16 << 20)
                .handshake::<_, Bytes>(stream)
                .await
                .map_err(|e| e.to_string())?;
            Ok((sender, conn))
        }
        .await;
        let (sender, conn) = match opened {
            Ok(pair) => pair,
            Err(err) => {
                tally.error(|| format!("h2 connect: {err}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let driver = tokio::spawn(conn);
        // The server's SETTINGS arrive with its first frames; wait for them before reading
        // the limit (the first request would otherwise see the default, unlimited).
        let sender = match sender.ready().await {
            Ok(sender) => sender,
            Err(err) => {
                tally.error(|| format!("h2 handshake: {err}"));
                driver.abort();
                continue;
            }
        };
        let workers: Vec<_> = (0..streams)
            .map(|_| tokio::spawn(stream_worker(sender.clone(), uri.clone(), plan.deadline)))
            .collect();
        max_streams = max_streams.max(sender.current_max_send_streams());
        drop(sender);
        for worker in workers {
            match worker.await {
                Ok((t, _)) => tally.merge(t),
                Err(err) => tally.error(|| format!("stream task: {err}")),
            }
        }
        driver.abort();
    }
    (tally, max_streams)
}

/// The `h2` mode's entry point.
pub async fn run(opts: Opts) -> Result<(), String> {
    let plan = Arc::new(Plan::new(&opts, false, ALPN_H2)?);
    if plan.tls.is_none() {
        return Err("the h2 mode needs an https:// URL (HTTP/2 over TLS)".into());
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..opts.conns.max(1))
        .map(|id| tokio::spawn(connection(plan.clone(), id, opts.streams.max(1))))
        .collect();
    let mut total = Tally::default();
    let mut max_streams = usize::MAX;
    for task in tasks {
        let (tally, limit) = task.await.map_err(|e| e.to_string())?;
        total.merge(tally);
        max_streams = max_streams.min(limit);
    }
    total.extra = format!(
        " alpn=h2 streams={} server_max_streams={max_streams}",
        opts.streams
    );
    total.report("h2", start.elapsed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The h2 mode refuses plain http:// (HTTP/2 here is always over TLS, with ALPN).
    #[tokio::test]
    async fn h2_needs_an_https_url() {
        let opts = Opts::parse(
            [
                "--url",
                "http://bench.test:1/",
                "--connect",
                "127.0.0.1:1",
                "--streams",
                "7",
            ]
            .into_iter()
            .map(String::from),
        )
        .unwrap();
        assert_eq!(opts.streams, 7);
        let err = run(opts).await.unwrap_err();
        assert!(err.contains("https://"), "{err}");
    }
}
