//! Body wrappers: an idle timeout that never limits a transfer while bytes
//! flow, and the access log line written when a response body ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http::Method;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// No bytes arrived from one side for the whole idle timeout.
#[derive(Debug)]
pub struct IdleTimeout(pub &'static str);

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no data from the {} within the idle timeout", self.0)
    }
}

impl std::error::Error for IdleTimeout {}

/// When bytes last moved on a request body, shared with the task waiting for
/// the upstream's response head (an upload is not idle while it streams).
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the last bytes moved.
    pub fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Fails the body when the inner one has kept us waiting for `timeout`.
/// The clock runs only while we wait on the inner body: a reader that is
/// slow to take bytes (back-pressure) does not count as idleness.
pub struct Idle<B> {
    inner: B,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    waiting_since: Option<Instant>,
    activity: Option<Arc<Activity>>,
    side: &'static str,
}

impl<B> Idle<B> {
    pub fn new(
        inner: B,
        timeout: Duration,
        side: &'static str,
        activity: Option<Arc<Activity>>,
    ) -> Idle<B> {
        Idle {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            waiting_since: None,
            activity,
            side,
        }
    }
}

impl<B> Body for Idle<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting_since = None;
                if let Some(a) = &this.activity {
                    a.touch();
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let since = *this.waiting_since.get_or_insert_with(Instant::now);
                // The timer is moved only when it fires early, not per frame.
                while this.sleep.as_mut().poll(cx).is_ready() {
                    let deadline = since + this.timeout;
                    if Instant::now() >= deadline {
                        return Poll::Ready(Some(Err(Box::new(IdleTimeout(this.side)))));
                    }
                    this.sleep.as_mut().reset(deadline);
                }
                Poll::Pending
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

/// What the proxy sends upstream: the client's streamed body, or nothing
/// when it asks the registry again itself (see `forward`'s offload fallback).
pub type RequestBody = Either<Idle<Incoming>, Empty<Bytes>>;

/// A blob range the proxy reads from the registry's volume itself.
pub struct FileBody {
    chunks: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    remaining: u64,
}

impl FileBody {
    pub fn new(file: std::fs::File, offset: u64, length: u64) -> FileBody {
        FileBody {
            chunks: Box::pin(wharf_storage::offload::file_stream(file, offset, length)),
            remaining: length,
        }
    }
}

/// What the proxy sends back: an upstream's streamed body, a blob it reads
/// itself, or one it wrote.
pub enum ResponseBody {
    Upstream(Idle<Incoming>),
    File(FileBody),
    Full(Full<Bytes>),
}

impl From<Full<Bytes>> for ResponseBody {
    fn from(b: Full<Bytes>) -> ResponseBody {
        ResponseBody::Full(b)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Upstream(b) => Pin::new(b).poll_frame(cx),
            ResponseBody::File(f) => match f.chunks.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    f.remaining = f.remaining.saturating_sub(chunk.len() as u64);
                    Poll::Ready(Some(Ok(Frame::data(chunk))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            ResponseBody::Full(b) => Pin::new(b).poll_frame(cx).map_err(|e| match e {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Upstream(b) => b.is_end_stream(),
            ResponseBody::File(f) => f.remaining == 0,
            ResponseBody::Full(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Upstream(b) => b.size_hint(),
            ResponseBody::File(f) => SizeHint::with_exact(f.remaining),
            ResponseBody::Full(b) => b.size_hint(),
        }
    }
}

/// The fields of one access log line.
pub struct AccessLog {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub route: &'static str,
    pub request_id: String,
    pub started: std::time::Instant,
}

/// Counts the bytes sent and writes the access log line when the body ends
/// (or is dropped early, when the client went away or the upstream failed).
pub struct Logged {
    inner: ResponseBody,
    log: Option<AccessLog>,
    bytes: u64,
}

impl Logged {
    pub fn new(inner: impl Into<ResponseBody>, log: AccessLog) -> Logged {
        Logged {
            inner: inner.into(),
            log: Some(log),
            bytes: 0,
        }
    }

    fn emit(&mut self, complete: bool) {
        if let Some(l) = self.log.take() {
            tracing::info!(
                http.method = %l.method,
                http.path = %l.path,
                http.status = l.status,
                route = l.route,
                size_bytes = self.bytes,
                duration_ms = l.started.elapsed().as_millis() as u64,
                request_id = %l.request_id,
                complete,
                "access"
            );
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        match &res {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.emit(true),
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "response body failed");
                this.emit(false);
            }
            Poll::Pending => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let complete = self.inner.is_end_stream();
        self.emit(complete);
    }
}
