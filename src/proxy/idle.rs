//! An idle timeout for a client connection: when nothing is read or written for the configured
//! time, the next read fails with `TimedOut` and the connection closes. It bounds what the
//! slowloris guard ([`crate::proxy::head_timeout`]) leaves alone: an HTTP/1.1 keep-alive
//! client waiting between requests, HTTP/2 connections, CONNECT tunnels and WebSockets left
//! open with no traffic.
//!
//! Activity only records an `Instant`; the timer is re-armed when it fires, so a busy
//! connection pays a clock read per I/O call, not a timer-wheel update.

use pin_project_lite::pin_project;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pin_project! {
    pub struct IdleTimeout<I> {
        #[pin]
        inner: I,
        // Boxed so the wrapper stays `Unpin` over an `Unpin` stream, as hyper requires.
        timer: Pin<Box<Sleep>>,
        timeout: Duration,
        last_activity: Instant,
    }
}

impl<I> IdleTimeout<I> {
    pub fn new(inner: I, timeout: Duration) -> Self {
        let now = Instant::now();
        IdleTimeout {
            inner,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
            timeout,
            last_activity: now,
        }
    }
}

/// Whether the connection has been idle past its timeout (re-arming the timer otherwise).
fn expired(
    timer: Pin<&mut Sleep>,
    last_activity: Instant,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> bool {
    let mut timer = timer;
    loop {
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        let deadline = last_activity + timeout;
        if deadline <= Instant::now() {
            return true;
        }
        timer.as_mut().reset(deadline);
    }
}

impl<I: AsyncRead> AsyncRead for IdleTimeout<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(result) => {
                *this.last_activity = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => {
                if expired(this.timer.as_mut(), *this.last_activity, *this.timeout, cx) {
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<I: AsyncWrite> AsyncWrite for IdleTimeout<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write(cx, buf);
        if polled.is_ready() {
            *this.last_activity = Instant::now();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        if polled.is_ready() {
            *this.last_activity = Instant::now();
        }
        polled
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_reads_time_out_and_activity_postpones() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut idle = IdleTimeout::new(a, Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(3)).await;
        b.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 1];
        idle.read_exact(&mut buf).await.unwrap();
        // 3 s after that read, still alive; the read then fails at 5 s of silence.
        let started = Instant::now();
        let err = idle.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(5));
    }
}
