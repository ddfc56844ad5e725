//! The slowloris guard for HTTP/1 client connections: a request head must arrive complete
//! within `header_read_timeout` of its first byte. hyper's own header-read timer also runs
//! while a keep-alive connection waits for its next request (hyper 1.12 arms it when it
//! starts waiting for a head), which closed idle clients at the header timeout; so hyper's
//! timer is off and this wrapper keeps the guard, leaving the wait between requests to the
//! idle timeout ([`crate::proxy::idle`]).
//!
//! The I/O wrapper and the service share a [`HeadWatch`]: the wrapper arms the deadline on
//! the first byte read while no request is in flight (a new connection too: one that never
//! sends a byte is the idle timeout's, as it was under hyper-util's version sniffing, which
//! runs no timer); the service disarms it when hyper has parsed a head ([`HeadWatch::head_received`]), and the response body's end makes the
//! connection wait again ([`HeadWatch::track`]). HTTP/2 (its preface) and upgraded
//! connections (CONNECT, `101`) turn the guard off: they are bounded by the idle timeout.
//!
//! A normal request costs a clock read and two atomic stores; the timer is only made when a
//! head stalls.

use bytes::Bytes;
use http::{Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Waiting between requests: the next byte arms the deadline.
const WAITING: u8 = 0;
/// A head is being read: the deadline runs.
const READING: u8 = 1;
/// A head was parsed; its exchange is in flight.
const BUSY: u8 = 2;
/// HTTP/2 or an upgraded connection: no head guard.
const OFF: u8 = 3;

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// `preface_seen` once the first bytes are known not to be the HTTP/2 preface.
const NOT_H2: usize = usize::MAX;

/// The state shared by a connection's I/O wrapper and its service.
#[derive(Clone, Debug)]
pub struct HeadWatch(Arc<AtomicU8>);

impl HeadWatch {
    /// hyper parsed a request head: stop its deadline. An HTTP/2 request turns the guard
    /// off for good (streams are multiplexed; there is no "between requests").
    pub fn head_received(&self, version: Version) {
        if version == Version::HTTP_2 {
            self.0.store(OFF, Ordering::Release);
            return;
        }
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state != OFF).then_some(BUSY)
            });
    }

    /// Returns `response` so that the connection waits for its next head once the body has
    /// been sent (or dropped). A response that upgrades the connection (`101`, or a `2xx`
    /// to CONNECT) turns the guard off: the bytes after it are no request heads.
    pub fn track<B>(self, method: &Method, response: Response<B>) -> Response<Tracked<B>> {
        let status = response.status();
        let upgrades = status == StatusCode::SWITCHING_PROTOCOLS
            || (method == Method::CONNECT && status.is_success());
        let watch = if upgrades {
            self.0.store(OFF, Ordering::Release);
            None
        } else {
            Some(self)
        };
        response.map(|inner| Tracked { inner, watch })
    }

    fn state(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }

    /// Whether an HTTP/1 connection is between requests: its last response was sent (or
    /// dropped) and no byte of the next head has arrived ([`crate::proxy::park`] parks it).
    pub fn waiting(&self) -> bool {
        self.state() == WAITING
    }

    /// Whether a parsed request's exchange is in flight (bytes read now are its body, or a
    /// pipelined request the server has not parsed yet).
    pub fn busy(&self) -> bool {
        self.state() == BUSY
    }

    /// The exchange is over: the next byte starts a new head.
    fn exchange_done(&self) {
        let _ = self
            .0
            .compare_exchange(BUSY, WAITING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A byte arrived; arms the deadline when no request was in flight.
    fn arm(&self) -> bool {
        self.0
            .compare_exchange(WAITING, READING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

pin_project! {
    /// A response body that tells the [`HeadWatch`] when it is done.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        watch: Option<HeadWatch>,
    }

    impl<B> PinnedDrop for Tracked<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(watch) = this.project().watch.take() {
                watch.exchange_done();
            }
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = polled {
            if let Some(watch) = this.watch.take() {
                watch.exchange_done();
            }
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

pin_project! {
    /// A client stream whose reads fail with `TimedOut` when a request head stalls.
    pub struct HeadTimeout<I> {
        #[pin]
        inner: I,
        watch: HeadWatch,
        timeout: Duration,
        deadline: Instant,
        // Made on the first stall only; boxed so the wrapper stays `Unpin`.
        timer: Option<Pin<Box<Sleep>>>,
        // How much of the HTTP/2 preface the first bytes matched.
        preface_seen: usize,
    }
}

impl<I> HeadTimeout<I> {
    /// Wraps a new connection; its first byte arms the deadline for its first head.
    pub fn new(inner: I, timeout: Duration) -> (Self, HeadWatch) {
        let watch = HeadWatch(Arc::new(AtomicU8::new(WAITING)));
        let wrapper = HeadTimeout {
            inner,
            watch: watch.clone(),
            timeout,
            deadline: Instant::now() + timeout,
            timer: None,
            preface_seen: 0,
        };
        (wrapper, watch)
    }
}

/// How much of the HTTP/2 preface `seen` bytes and then `bytes` match, or [`NOT_H2`].
fn preface_progress(seen: usize, bytes: &[u8]) -> usize {
    let rest = &H2_PREFACE[seen..];
    let n = rest.len().min(bytes.len());
    if rest[..n] == bytes[..n] {
        seen + n
    } else {
        NOT_H2
    }
}

impl<I: AsyncRead> AsyncRead for HeadTimeout<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let bytes = &buf.filled()[before..];
                if !bytes.is_empty() {
                    if *this.preface_seen < H2_PREFACE.len() {
                        *this.preface_seen = preface_progress(*this.preface_seen, bytes);
                        if *this.preface_seen == H2_PREFACE.len() {
                            this.watch.0.store(OFF, Ordering::Release);
                        }
                    }
                    if this.watch.arm() {
                        *this.deadline = Instant::now() + *this.timeout;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                if this.watch.state() != READING {
                    return Poll::Pending;
                }
                let deadline = *this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not received in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<I: AsyncWrite> AsyncWrite for HeadTimeout<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SECOND: Duration = Duration::from_secs(1);

    /// Reads until the wrapper fails; returns how long that took.
    async fn time_to_failure<I: AsyncRead + Unpin>(io: &mut I) -> Duration {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        loop {
            match io.read(&mut buf).await {
                Ok(0) => panic!("EOF instead of a timeout"),
                Ok(_) => {}
                Err(err) => {
                    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
                    return started.elapsed();
                }
            }
        }
    }

    #[test]
    fn the_h2_preface_is_recognised_across_reads() {
        // One row per case: (bytes already matched, next read, progress after it).
        let rows: [(usize, &[u8], usize); 5] = [
            (0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00", 24), // whole preface and a frame
            (0, b"PRI * HT", 8),                                  // a prefix: undecided yet
            (8, b"TP/2.0\r\n\r\nSM\r\n\r\n", 24),                 // the rest of it
            (0, b"GET / HTTP/1.1\r\n", NOT_H2),                   // HTTP/1
            (0, b"PRIVATE-VERB / HTTP/1.1", NOT_H2),              // a method that starts alike
        ];
        for (seen, bytes, want) in rows {
            assert_eq!(preface_progress(seen, bytes), want, "{bytes:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_head_is_timed_from_its_first_byte() {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut io, _watch) = HeadTimeout::new(a, SECOND);
        let mut buf = [0u8; 64];
        let silent = tokio::time::timeout(Duration::from_secs(60), io.read(&mut buf)).await;
        assert!(
            silent.is_err(),
            "a silent new connection was cut by the head guard"
        );
        b.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(time_to_failure(&mut io).await, SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_between_requests_is_unbounded_and_the_next_head_is_timed_from_its_first_byte()
    {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut io, watch) = HeadTimeout::new(a, SECOND);
        b.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        watch.head_received(Version::HTTP_11);
        let response = watch
            .clone()
            .track(&Method::GET, Response::new(Full::new(Bytes::from("ok"))));
        response.into_body().collect().await.unwrap();
        // Idle for a minute: no deadline runs between requests.
        let idle = tokio::time::timeout(Duration::from_secs(60), io.read(&mut buf)).await;
        assert!(idle.is_err(), "the wait between requests was cut");
        b.write_all(b"GET /next HTTP/1.1\r\n").await.unwrap();
        assert_eq!(time_to_failure(&mut io).await, SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn h2_and_upgraded_connections_have_no_head_guard() {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut io, _watch) = HeadTimeout::new(a, SECOND);
        b.write_all(H2_PREFACE).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), H2_PREFACE.len());
        let idle = tokio::time::timeout(Duration::from_secs(60), io.read(&mut buf)).await;
        assert!(idle.is_err(), "an HTTP/2 connection was cut");

        let (a, mut b) = tokio::io::duplex(64);
        let (mut io, watch) = HeadTimeout::new(a, SECOND);
        b.write_all(b"CONNECT a.test:443 HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        assert!(io.read(&mut buf).await.unwrap() > 0);
        watch.head_received(Version::HTTP_11);
        drop(
            watch
                .clone()
                .track(&Method::CONNECT, Response::new(Full::new(Bytes::new()))),
        );
        b.write_all(b"\x16\x03\x01").await.unwrap();
        assert!(io.read(&mut buf).await.unwrap() > 0);
        let idle = tokio::time::timeout(Duration::from_secs(60), io.read(&mut buf)).await;
        assert!(idle.is_err(), "a tunnel was cut by the head guard");
    }
}
