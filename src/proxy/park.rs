//! Parking idle HTTP/1.1 client connections: an idle connection holds its socket and nothing
//! of hyper's (issue 15, item 3).
//!
//! hyper's HTTP/1 server keeps a read buffer (8–16 KiB) and a header write buffer (8 KiB) per
//! connection for as long as the connection lives, idle or not, plus its dispatcher and the
//! in-flight slot of the service future. So a connection is served in *cycles*: hyper serves
//! it while requests come; once a keep-alive connection has waited [`PARK_AFTER`] for its next
//! request with everything sent, the [`Lease`] it reads through reports end-of-stream, hyper
//! ends that connection cleanly (a server takes an EOF between requests as the client
//! leaving), the stream comes back here, and the task waits for the next byte with no hyper
//! state at all. That byte starts the next cycle. A new connection starts parked too: nothing
//! of hyper's exists until its first bytes arrive.
//!
//! What the client sees does not change: no byte is written and the socket is not shut down
//! when a cycle ends. The timeouts below the lease keep running while parked: the idle
//! timeout ([`crate::proxy::idle`]) closes a parked connection, and the first byte of the next
//! head arms the slowloris guard ([`crate::proxy::head_timeout`]) as before. HTTP/2 and
//! upgraded connections (CONNECT, `101`) never park: their [`HeadWatch`] is off.
//!
//! One case parks wrongly: half a pipelined head that came in the same read as the whole
//! request before it, then a stall past the park delay; hyper holds those bytes, takes the
//! end-of-stream as a cut head and the connection closes (the slowloris guard does not time
//! that head either: its bytes came while the exchange before it was in flight). Half a head
//! read in a later read, while that exchange runs, keeps the connection from parking.
//!
//! A busy keep-alive connection never parks (its waits are shorter than [`PARK_AFTER`]); what
//! it pays is a flag test per request and, at most once per [`PARK_AFTER`], a timer reset.

use crate::proxy::head_timeout::HeadWatch;
use crate::proxy::state::Shared;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a keep-alive connection waits for its next request before it is parked (up to
/// twice this: see [`Lease::park_due`]). Long enough that back-to-back requests never pay for
/// a new hyper connection, short enough that thousands of idle browser connections hold only
/// their sockets.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// The client connection preface of HTTP/2 (RFC 9113 §3.4): its first bytes.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How many bytes the parked task reads to learn HTTP/1 from HTTP/2.
const PEEK: usize = 24;

type BoxError = Box<dyn Error + Send + Sync>;

/// Where the stream goes back when hyper lets go of it at a park.
type Home<I> = Arc<Mutex<Option<I>>>;

/// Serves an HTTP client connection in cycles (see the module doc) until it closes, fails, is
/// upgraded, turns out to be HTTP/2, or `stopping` turns true while it is parked (while it is
/// served, hyper finishes the requests in flight and closes).
pub async fn serve<I, S, B>(
    shared: &Shared,
    io: I,
    watch: HeadWatch,
    service: S,
) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut stopping = shared.stopping.clone();
    let home: Home<I> = Arc::new(Mutex::new(None));
    let mut io = io;
    loop {
        // Parked: only the stream, the task and these bytes.
        let mut peek = [0u8; PEEK];
        let n = tokio::select! {
            read = io.read(&mut peek) => read?,
            () = stopped(&mut stopping) => return Ok(()),
        };
        if n == 0 {
            return Ok(()); // the client closed
        }
        let h2_maybe = H2_PREFACE.starts_with(&peek[..n]);
        let lease = Lease::new(io, home.clone(), watch.clone(), &peek[..n]);
        let io_for_hyper = TokioIo::new(lease);
        // Boxed, so that a parked task does not keep room for hyper's connection.
        let mut conn: Pin<Box<dyn Connection>> = if h2_maybe {
            // Possibly HTTP/2: hyper-util tells them apart from the preface.
            Box::pin(
                shared
                    .server
                    .serve_connection_with_upgrades(io_for_hyper, service.clone())
                    .into_owned(),
            )
        } else {
            Box::pin(
                shared
                    .http1
                    .serve_connection(io_for_hyper, service.clone())
                    .with_upgrades(),
            )
        };
        let result = tokio::select! {
            result = conn.as_mut().run() => result,
            () = stopped(&mut stopping) => {
                // Finish the requests in flight, then close.
                conn.as_mut().shut_down();
                conn.as_mut().run().await
            }
        };
        drop(conn); // hands the stream back if the lease parked
        result?;
        match home.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(back) => io = back,
            None => return Ok(()),
        }
        tracing::trace!("connection parked");
    }
}

/// Resolves when the proxy is asked to stop (or its sender is gone). The guard `wait_for`
/// returns is dropped here, so nothing `!Send` is held across an await.
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await.map(|_| ());
}

/// A hyper server connection of either kind, run and shut down alike.
trait Connection: Send {
    fn run(self: Pin<&mut Self>) -> Run<'_>;
    fn shut_down(self: Pin<&mut Self>);
}

/// The future of [`Connection::run`].
type Run<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

impl<I, S, B> Connection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B> + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn run(self: Pin<&mut Self>) -> Run<'_> {
        Box::pin(async move { self.await.map_err(Into::into) })
    }
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Connection
    for hyper_util::server::conn::auto::UpgradeableConnection<
        'static,
        I,
        S,
        hyper_util::rt::TokioExecutor,
    >
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Send,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn run(self: Pin<&mut Self>) -> Run<'_> {
        Box::pin(self)
    }
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// The stream as lent to one hyper connection: replays the bytes read while parked, and
/// reports end-of-stream once the connection has idled [`PARK_AFTER`] between requests.
pub struct Lease<I> {
    /// `None` only once given back.
    io: Option<I>,
    home: Home<I>,
    watch: HeadWatch,
    /// The bytes the parked task read, not yet given to hyper.
    peeked: [u8; PEEK],
    peeked_len: u8,
    /// Whether everything hyper wrote was flushed (hyper flushes only with its buffer empty).
    flushed: bool,
    /// Whether hyper's last read found nothing to read (it is waiting for the task's waker).
    read_pending: bool,
    /// Whether the last bytes read came while an exchange was in flight: a request body, or
    /// a pipelined head hyper may hold partly in its buffer, which an end-of-stream would
    /// turn into a cut head. Such a connection does not park until it reads a head anew.
    read_while_busy: bool,
    /// Whether anything was read since the park timer's period began.
    read_since_armed: bool,
    /// Made on the first wait only; one period at a time (see [`Lease::park_due`]).
    timer: Option<Pin<Box<Sleep>>>,
    parked: bool,
}

impl<I> Lease<I> {
    fn new(io: I, home: Home<I>, watch: HeadWatch, peeked: &[u8]) -> Self {
        let mut buf = [0u8; PEEK];
        let n = peeked.len().min(PEEK);
        buf[..n].copy_from_slice(&peeked[..n]);
        Lease {
            io: Some(io),
            home,
            watch,
            peeked: buf,
            peeked_len: n as u8,
            flushed: true,
            read_pending: false,
            read_while_busy: false,
            read_since_armed: true,
            timer: None,
            parked: false,
        }
    }

    /// Whether the connection is between requests with nothing left to send or to parse.
    fn may_park(&self) -> bool {
        self.flushed && !self.read_while_busy && self.watch.waiting()
    }

    /// Whether the connection, waiting for its next head with everything sent, has read
    /// nothing for [`PARK_AFTER`]. The timer runs in periods: when one ends with no read in
    /// it, the connection parks; when reads happened, the next period starts. So a wait parks
    /// between one and two periods after the last read, and a busy connection pays a timer
    /// reset once per period and otherwise a flag test per request (no clock read).
    fn park_due(&mut self, cx: &mut Context<'_>) -> bool {
        let timer = match &mut self.timer {
            None => self.timer.insert(Box::pin(tokio::time::sleep(PARK_AFTER))),
            // Running, and registered with this task's waker when it was armed.
            Some(timer) if !timer.is_elapsed() => return false,
            Some(_) if !self.read_since_armed => return true,
            Some(timer) => {
                timer.as_mut().reset(Instant::now() + PARK_AFTER);
                timer
            }
        };
        self.read_since_armed = false;
        // Registers the waker; a fresh period cannot have ended yet.
        let _ = timer.as_mut().poll(cx);
        false
    }
}

impl<I> Drop for Lease<I> {
    fn drop(&mut self) {
        if self.parked {
            if let Some(io) = self.io.take() {
                *self.home.lock().unwrap_or_else(PoisonError::into_inner) = Some(io);
            }
        }
    }
}

/// The error of I/O on a lease after it was given back (hyper does not do that).
fn given_back() -> io::Error {
    io::Error::other("the connection was parked")
}

impl<I: AsyncRead + Unpin> AsyncRead for Lease<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.parked {
            return Poll::Ready(Ok(()));
        }
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Err(given_back()));
        };
        if this.peeked_len > 0 {
            this.read_since_armed = true;
            // The peeked bytes and whatever follows them in one read, so hyper parses the
            // head from one buffer instead of growing it for a short first read.
            let n = usize::from(this.peeked_len).min(buf.remaining());
            buf.put_slice(&this.peeked[..n]);
            this.peeked.copy_within(n.., 0);
            this.peeked_len -= n as u8;
            if this.peeked_len == 0 && buf.remaining() > 0 {
                // Nothing more yet (Pending) or an error: the next read sees it.
                let _ = Pin::new(io).poll_read(cx, buf);
            }
            return Poll::Ready(Ok(()));
        }
        match Pin::new(io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.read_since_armed = true;
                this.read_pending = false;
                this.read_while_busy = this.watch.busy();
                Poll::Ready(result)
            }
            Poll::Pending => {
                this.read_pending = true;
                if this.may_park() && this.park_due(cx) {
                    // End-of-stream between requests: hyper ends this connection quietly.
                    this.parked = true;
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Lease<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(io) = this.io.as_mut().filter(|_| !this.parked) else {
            return Poll::Ready(Err(given_back()));
        };
        this.flushed = false;
        Pin::new(io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(io) = this.io.as_mut().filter(|_| !this.parked) else {
            return Poll::Ready(Err(given_back()));
        };
        this.flushed = false;
        Pin::new(io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.parked {
            return Poll::Ready(Ok(()));
        }
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Err(given_back()));
        };
        let polled = Pin::new(io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = polled {
            this.flushed = true;
            // hyper asked for the next head before the response was out (it reads first in
            // each turn): arm the park timer now, on the same task, so the wait is timed.
            if this.read_pending && this.may_park() && this.park_due(cx) {
                cx.waker().wake_by_ref();
            }
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.parked {
            // The connection goes on: only this hyper connection ended.
            return Poll::Ready(Ok(()));
        }
        match this.io.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Err(given_back())),
        }
    }
}
