//! `GET /events`: the exchange feed as Server-Sent Events (HTML Living Standard §9.2), the
//! transport every browser's `EventSource` speaks and `curl -N` can read.
//!
//! Each record is `event: exchange`, `id: N`, `data: {json}`. A comment line is sent every
//! [`HEARTBEAT`] so proxies and idle timers see traffic. A reconnecting `EventSource` sends
//! `Last-Event-ID` (or a page passes `?after=N`), and gets what the ring still holds after it.
//! A reader slower than the traffic never slows the proxy: the broadcast drops what the reader
//! missed and the stream says so (`event: lagged`, `data: {"skipped": n}`).

use super::{AdminBody, AdminContext};
use crate::traffic::TrafficRecord;
use bytes::Bytes;
use futures_util::stream;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// How often an idle stream sends a comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Records written in one frame at most: under a burst, fewer and larger writes.
const BATCH: usize = 64;

struct State {
    rx: broadcast::Receiver<Arc<TrafficRecord>>,
    backlog: VecDeque<Arc<TrafficRecord>>,
    last_sent: u64,
    heartbeat: tokio::time::Interval,
    greeted: bool,
}

/// Starts an event stream for this request.
pub fn stream<B>(ctx: &AdminContext, req: &Request<B>) -> Response<AdminBody> {
    // Subscribe before reading the ring, so nothing published in between is lost; ids
    // already sent from the ring are skipped when the broadcast repeats them.
    let rx = ctx.feed.subscribe();
    let after = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| super::api::param(req.uri().query().unwrap_or(""), "after"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let backlog: VecDeque<_> = match after {
        Some(after) => ctx.feed.since(after, ctx.feed.history()).into(),
        None => VecDeque::new(),
    };
    let state = State {
        rx,
        backlog,
        last_sent: after.unwrap_or(0),
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT),
        greeted: false,
    };
    let body = StreamBody::new(stream::unfold(state, next)).boxed_unsync();
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

type Item = Result<Frame<Bytes>, Infallible>;

async fn next(mut st: State) -> Option<(Item, State)> {
    if !st.greeted {
        st.greeted = true;
        // `retry`: reconnect after 1 s instead of the browser's default 3 s.
        return Some((
            frame(b"retry: 1000\n: strictproxy exchange feed\n\n".to_vec()),
            st,
        ));
    }
    let mut out = Vec::new();
    while out.len() < BATCH * 512 {
        let Some(record) = st.backlog.pop_front() else {
            break;
        };
        push_event(&mut out, &record, &mut st.last_sent);
    }
    if !out.is_empty() {
        return Some((frame(out), st));
    }
    loop {
        tokio::select! {
            received = st.rx.recv() => match received {
                Ok(record) => {
                    push_event(&mut out, &record, &mut st.last_sent);
                    // Take what else is already waiting, up to a batch.
                    for _ in 1..BATCH {
                        match st.rx.try_recv() {
                            Ok(record) => push_event(&mut out, &record, &mut st.last_sent),
                            Err(_) => break,
                        }
                    }
                    if !out.is_empty() {
                        return Some((frame(out), st));
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    let text = format!("event: lagged\ndata: {{\"skipped\":{skipped}}}\n\n");
                    return Some((frame(text.into_bytes()), st));
                }
                Err(RecvError::Closed) => return None,
            },
            _ = st.heartbeat.tick() => return Some((frame(b": heartbeat\n\n".to_vec()), st)),
        }
    }
}

/// Appends one `exchange` event, unless it was already sent.
fn push_event(out: &mut Vec<u8>, record: &TrafficRecord, last_sent: &mut u64) {
    if record.id <= *last_sent {
        return;
    }
    // Compact JSON has no raw newline (one inside a string is escaped), so one `data:` line.
    let Ok(json) = serde_json::to_vec(record) else {
        return;
    };
    *last_sent = record.id;
    out.extend_from_slice(format!("event: exchange\nid: {}\ndata: ", record.id).as_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(b"\n\n");
}

fn frame(bytes: Vec<u8>) -> Item {
    Ok(Frame::data(Bytes::from(bytes)))
}
