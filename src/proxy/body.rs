//! Body plumbing: one boxed body type for everything the proxy sends, and two thin wrappers
//! that count bytes as they stream through. Nothing here buffers a body: each frame is
//! passed on as it arrives, so a 1 GiB transfer costs the proxy no more memory than a small one.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// The error type of every body the proxy handles.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every request the proxy sends upstream and every response it sends a client.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body with fixed content (the proxy's own answers).
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Wraps any body into a [`ProxyBody`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

pin_project_lite::pin_project! {
    /// Counts the data bytes of a body into a shared counter as they pass.
    pub struct Counted<B> {
        #[pin]
        inner: B,
        counter: Arc<AtomicU64>,
    }
}

impl<B> Counted<B> {
    pub fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        Counted { inner, counter }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
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

pub use crate::proxy::errors::ClientBodyError;

/// What became of the client's request body, seen from the forwarding side: whether it failed
/// (and why), and when it was completely handed to the upstream.
#[derive(Clone, Default)]
pub struct ClientBodyState {
    failed: Arc<std::sync::OnceLock<String>>,
}

impl ClientBodyState {
    /// Why the client's body failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }
}

pin_project_lite::pin_project! {
    /// The client's request body on its way upstream. Its errors become [`ClientBodyError`]
    /// (and are noted in the shared state, since an HTTP/2 upstream reports only a reset), so
    /// the exchange blames the client; and `sent` is dropped when the body has ended or was
    /// dropped by the upstream client: from then on the wait for a response head is timed.
    pub struct FromClient<B> {
        #[pin]
        inner: B,
        state: ClientBodyState,
        sent: Option<tokio::sync::oneshot::Sender<()>>,
    }
}

impl<B> FromClient<B> {
    pub fn new(inner: B, state: ClientBodyState, sent: tokio::sync::oneshot::Sender<()>) -> Self {
        FromClient {
            inner,
            state,
            sent: Some(sent),
        }
    }
}

impl<B> Body for FromClient<B>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + 'static,
{
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(err))) => {
                // hyper's own message ("error reading a body from connection") hides the
                // cause ("invalid chunk size line"); the chain names it.
                let detail = crate::proxy::errors::error_chain(&err);
                let _ = this.state.failed.set(detail.clone());
                this.sent.take();
                Poll::Ready(Some(Err(ClientBodyError::new(detail))))
            }
            Poll::Ready(None) => {
                this.sent.take();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Called once when a response body has been fully sent, failed, or was dropped by a client
/// that went away: it receives the bytes sent and whether the body ended normally.
pub type OnEnd = Box<dyn FnOnce(u64, bool) + Send>;

pin_project_lite::pin_project! {
    /// A response body that reports its end (for the traffic log and metrics), however the
    /// exchange ends: normally, with an error, or by the client dropping the connection.
    pub struct Observed<B> {
        #[pin]
        inner: B,
        sent: u64,
        on_end: Option<OnEnd>,
    }

    impl<B> PinnedDrop for Observed<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(on_end) = this.on_end.take() {
                on_end(*this.sent, false);
            }
        }
    }
}

impl<B> Observed<B> {
    pub fn new(inner: B, on_end: OnEnd) -> Self {
        Observed {
            inner,
            sent: 0,
            on_end: Some(on_end),
        }
    }
}

impl<B> Body for Observed<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(on_end) = this.on_end.take() {
                    on_end(*this.sent, true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(on_end) = this.on_end.take() {
                    on_end(*this.sent, false);
                }
            }
            Poll::Pending => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn counted_counts_and_observed_reports_once() {
        let counter = Arc::new(AtomicU64::new(0));
        let body = Counted::new(Full::new(Bytes::from_static(b"hello")), counter.clone());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let observed = Observed::new(
            body,
            Box::new(move |n, ok| seen2.lock().unwrap().push((n, ok))),
        );
        let collected = observed.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hello");
        assert_eq!(counter.load(Ordering::Relaxed), 5);
        assert_eq!(*seen.lock().unwrap(), vec![(5, true)]);
    }

    #[test]
    fn observed_reports_when_dropped_unfinished() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let observed = Observed::new(
            Full::new(Bytes::from_static(b"x")),
            Box::new(move |n, ok| seen2.lock().unwrap().push((n, ok))),
        );
        drop(observed);
        assert_eq!(*seen.lock().unwrap(), vec![(0, false)]);
    }

    #[derive(Debug)]
    struct Broken;

    impl Body for Broken {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(Some(Err(std::io::Error::other("invalid chunk size line"))))
        }
    }

    #[tokio::test]
    async fn client_body_errors_are_the_clients_and_end_the_send() {
        let state = ClientBodyState::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let body = FromClient::new(Broken, state.clone(), tx);
        let err = body.collect().await.err().unwrap();
        assert!(err.to_string().contains("invalid chunk size line"));
        assert_eq!(state.failure(), Some("invalid chunk size line"));
        assert!(rx.await.is_err(), "the sender is gone: the body is over");

        let state = ClientBodyState::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let body = FromClient::new(Full::new(Bytes::from_static(b"ok")), state.clone(), tx);
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"ok");
        assert_eq!(state.failure(), None);
        assert!(rx.await.is_err());
    }
}
