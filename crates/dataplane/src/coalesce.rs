//! The I/O under an HTTP/2 connection: lets h2 gather small responses into one write, and joins
//! the two writes h2 makes of a large DATA frame into one.
//!
//! h2 copies a DATA frame into its 16 KiB write buffer only below a threshold: 256 bytes when
//! the I/O says it writes vectors, 1 KiB when not. A frame at or over it is written on its own
//! (the buffer, then the payload), and h2 flushes before it buffers the next frame. Over TLS
//! every such write is a record and a `writev`: with vectored I/O, a 256-byte response cost one
//! each (1.0 `writev` per request in the peers' h2-tls scenario, where HAProxy makes 0.25 writes
//! to the client).
//!
//! So the connection's I/O says it does not write vectors, and h2 batches every frame under
//! 1 KiB with the others ready at the same time (0.25 `writev` per request). Then h2 writes a
//! larger frame in two calls, its buffer (1 KiB and the frame head) and the rest of the payload;
//! without the join below that is two records and two system calls per frame (64 KiB bodies:
//! 10 `writev` per response instead of 5, and 39% more CPU). A write that fits in [`HOLD`] is
//! kept back and goes out with the next write or at the flush, as one vectored write.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held back: h2's buffer before a chained frame (1 KiB of payload and a 9-byte
/// head) fits, with room for the small frames buffered before it.
const HOLD: usize = 2 * 1024;

/// An I/O object that reports no vectored writes and holds small writes back until the next
/// write or flush.
pub(crate) struct Coalesced<I> {
    inner: I,
    held: Vec<u8>,
}

impl<I> Coalesced<I> {
    pub(crate) fn new(inner: I) -> Self {
        Self {
            inner,
            held: Vec::new(),
        }
    }
}

impl<I: AsyncWrite + Unpin> Coalesced<I> {
    /// Writes out what is held, however many writes that takes.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Coalesced<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Coalesced<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.held.len() + buf.len() <= HOLD {
            if this.held.capacity() == 0 {
                this.held.reserve_exact(HOLD);
            }
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        while !this.held.is_empty() {
            let held = this.held.len();
            let slices = [IoSlice::new(&this.held), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n > held {
                this.held.clear();
                return Poll::Ready(Ok(n - held));
            }
            this.held.drain(..n);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    /// False whatever the inner I/O does: it is what makes h2 copy frames under 1 KiB into its
    /// buffer rather than write each on its own.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_release(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_release(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each write call; takes at most `max` bytes per call, and returns `Pending` (having
    /// woken the task) every other call when `stall` is set.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        max: Option<usize>,
        stall: bool,
        stalled: bool,
    }

    impl Recorder {
        fn take(&mut self, cx: &mut Context<'_>, bytes: Vec<u8>) -> Poll<io::Result<usize>> {
            if self.stall && !self.stalled {
                self.stalled = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.stalled = false;
            let n = self.max.map_or(bytes.len(), |max| bytes.len().min(max));
            self.writes.push(bytes[..n].to_vec());
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.take(cx, buf.to_vec())
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.take(cx, bufs.iter().flat_map(|b| b.iter().copied()).collect())
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn write_all(io: &mut Coalesced<Recorder>, chunks: &[&[u8]]) {
        use tokio::io::AsyncWriteExt;
        for chunk in chunks {
            io.write_all(chunk).await.unwrap();
        }
        io.flush().await.unwrap();
    }

    #[tokio::test]
    async fn small_writes_leave_in_one_write_at_the_flush() {
        let mut io = Coalesced::new(Recorder::default());
        assert!(!io.is_write_vectored());
        write_all(&mut io, &[b"one", b"two", b"three"]).await;
        assert_eq!(io.inner.writes, vec![b"onetwothree".to_vec()]);
        assert_eq!(io.inner.flushes, 1);
        // Nothing is held after a flush.
        write_all(&mut io, &[]).await;
        assert_eq!(io.inner.writes.len(), 1);
    }

    #[tokio::test]
    async fn a_held_write_joins_the_large_write_after_it() {
        let mut io = Coalesced::new(Recorder::default());
        let head = vec![1u8; 1033];
        let payload = vec![2u8; 15_360];
        write_all(&mut io, &[&head, &payload]).await;
        assert_eq!(io.inner.writes, vec![[head, payload].concat()]);
    }

    #[tokio::test]
    async fn partial_and_pending_writes_lose_and_repeat_nothing() {
        let head = vec![1u8; 1500];
        let payload: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let tail = vec![3u8; 100];
        for max in [700, 1500, 1501, 4096] {
            let mut io = Coalesced::new(Recorder {
                max: Some(max),
                stall: true,
                ..Recorder::default()
            });
            write_all(&mut io, &[&head, &payload, &tail]).await;
            let written: Vec<u8> = io.inner.writes.concat();
            assert_eq!(written, [&head[..], &payload, &tail].concat(), "max {max}");
        }
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_held_first() {
        use tokio::io::AsyncWriteExt;
        let mut io = Coalesced::new(Recorder::default());
        io.write_all(b"goaway").await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(io.inner.writes, vec![b"goaway".to_vec()]);
    }
}
