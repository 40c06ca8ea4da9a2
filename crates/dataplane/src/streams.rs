//! The streams of one HTTP/2 connection, polled by the connection's own task.
//!
//! hyper's HTTP/2 server hands each request's future (and an upgraded stream's pump) to an
//! executor. As tokio tasks, each cost an aligned allocation (tokio aligns a task to 128 bytes:
//! `posix_memalign`, ~590 instructions in glibc), the spawn with its moves of the future (~1,400)
//! and the scheduler's work. Here they go into a `FuturesUnordered` that the connection's task
//! polls right after the connection: 39,570 instructions per HTTP/2 request against 40,537
//! (`H2=1 bench/proxy-icount.sh`). A connection's streams ran on its worker thread already (one
//! current-thread runtime per worker), so nothing runs in parallel less than before.
//!
//! The streams end with the connection: when it closes, fails, or is dropped at the drain
//! deadline, the requests still in flight on it are dropped, and their upstream exchanges with
//! them (as h2 resetting their streams made hyper do when they were tasks).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_util::stream::{FuturesUnordered, StreamExt};
use pin_project_lite::pin_project;

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor given to hyper: collects what it spawns for [`WithStreams`] to poll.
#[derive(Clone, Default)]
pub(crate) struct Spawner(Arc<Mutex<Inbox>>);

#[derive(Default)]
struct Inbox {
    new: Vec<Stream>,
    /// The connection task's waker while it waits; `None` while it runs, as whatever is spawned
    /// then is collected before it returns. (hyper spawns only from the futures polled here;
    /// the waker is for any that would not.)
    waker: Option<Waker>,
}

impl<F> hyper::rt::Executor<F> for Spawner
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let mut inbox = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inbox.new.push(Box::pin(fut));
        if let Some(waker) = inbox.waker.take() {
            waker.wake();
        }
    }
}

pin_project! {
    /// A connection future and the streams it spawned through `spawner`; resolves with the
    /// connection.
    pub(crate) struct WithStreams<C> {
        #[pin]
        conn: C,
        streams: FuturesUnordered<Stream>,
        spawner: Spawner,
    }
}

impl<C> WithStreams<C> {
    pub(crate) fn new(conn: C, spawner: Spawner) -> Self {
        Self {
            conn,
            streams: FuturesUnordered::new(),
            spawner,
        }
    }

    pub(crate) fn conn(self: Pin<&mut Self>) -> Pin<&mut C> {
        self.project().conn
    }
}

impl<C: Future> Future for WithStreams<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.project();
        // Running: what is spawned now is collected below, without waking this task again.
        this.spawner.0.lock().unwrap_or_else(PoisonError::into_inner).waker = None;
        if let Poll::Ready(out) = this.conn.poll(cx) {
            return Poll::Ready(out);
        }
        loop {
            // Streams spawned by the connection just now, or by a stream (an upgrade's pump).
            let new = std::mem::take(&mut this.spawner.0.lock().unwrap_or_else(PoisonError::into_inner).new);
            this.streams.extend(new);
            // Until every stream waits (or none is left); each registers its own wake-up.
            while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {}
            let mut inbox = this.spawner.0.lock().unwrap_or_else(PoisonError::into_inner);
            if inbox.new.is_empty() {
                inbox.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
    }
}
