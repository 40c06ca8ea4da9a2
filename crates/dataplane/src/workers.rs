//! Worker threads, each running a single-threaded runtime of its own. The runtime that calls
//! [`Dataplane::run`](crate::Dataplane::run) accepts, and hands each connection with its socket to
//! the worker serving the fewest connections (HAProxy spreads its accepted connections the same
//! way). The connection then stays on that thread: its requests, its HTTP/2 streams and its
//! upstream connections (each worker has its own pools) are never woken from another thread, and
//! no task is stolen between threads.
//!
//! Why not tokio's work-stealing runtime: on the same load, this shape spent 6% less CPU per
//! request than the multi-thread runtime with as many workers, within 2% of as many processes
//! sharing nothing, and varied less (`bench/runtime-shape.sh`, bench/README.md).
//!
//! Why not one `SO_REUSEPORT` listener per worker: the kernel spreads connections by a hash of
//! their addresses, blind to how busy each worker is, and any other process of the same user
//! that sets the option can bind the same port and take a share of the traffic without an error.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use http::HeaderValue;
use portier_telemetry::{ConnectionGuard, WorkerGauge};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::{debug, warn, Instrument, Span};

use crate::server::{serve_tcp, Accepted, Shared};

/// The running workers; dropping this stops them (see [`Workers::stop`] to wait for that).
pub(crate) struct Workers {
    queues: Vec<Queue>,
    /// Where the search for the least busy worker starts, so that ties rotate.
    next: AtomicUsize,
    /// Cancelled once the drain is over: each worker then drops what is left and exits.
    done: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

/// An accepted connection on its way to a worker.
pub(crate) struct Job {
    pub(crate) stream: std::net::TcpStream,
    pub(crate) client: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) local_port: HeaderValue,
    pub(crate) open: ConnectionGuard,
    pub(crate) span: Span,
}

struct Queue {
    jobs: mpsc::UnboundedSender<Queued>,
    /// Open connections of the worker: `portier_worker_connections{worker="i"}`.
    load: WorkerGauge,
}

struct Queued {
    job: Job,
    load: Load,
    /// Keeps the drain waiting from the accept until the worker has spawned the connection's task
    /// (which the tracker then counts itself).
    _tracked: TaskTrackerToken,
}

/// Counts one connection against its worker until the connection ends.
#[derive(Debug)]
pub(crate) struct Load(WorkerGauge);

// === impl Workers ===

impl Workers {
    /// Starts `n` workers serving connections with `shared`'s settings; each gets its own
    /// upstream pools. Fails when a runtime or a thread cannot be created (the ones started
    /// already stop).
    pub(crate) fn start(shared: &Shared, n: usize, shutdown: &CancellationToken) -> io::Result<Self> {
        let mut workers = Workers {
            queues: Vec::with_capacity(n),
            next: AtomicUsize::new(0),
            done: CancellationToken::new(),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (tx, rx) = mpsc::unbounded_channel();
            let worker = Arc::new(shared.for_worker());
            let (shutdown, done) = (shutdown.clone(), workers.done.clone());
            let thread = std::thread::Builder::new()
                .name(format!("portier-w{i}"))
                .spawn(move || runtime.block_on(work(worker, rx, shutdown, done)))?;
            workers.queues.push(Queue {
                jobs: tx,
                load: shared.metrics.worker_connections(u32::try_from(i).unwrap_or(u32::MAX)),
            });
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    pub(crate) fn len(&self) -> usize {
        self.queues.len()
    }

    /// Hands `job` to the worker with the fewest open connections. A worker whose thread has
    /// ended (it would have panicked) refuses the job, and the next least busy takes it.
    pub(crate) fn dispatch(&self, mut job: Job, mut tracked: TaskTrackerToken) {
        let n = self.queues.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let mut order: Vec<&Queue> = (0..n).map(|k| &self.queues[(start + k) % n]).collect();
        // Stable: among equally busy workers, the rotation above decides.
        order.sort_by_key(|q| q.load.get());
        for q in order {
            // Counted before it is sent: the next accept, maybe before the worker wakes, sees it.
            let queued = Queued {
                job,
                load: Load::new(q.load.clone()),
                _tracked: tracked,
            };
            match q.jobs.send(queued) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => (job, tracked) = (back.job, back._tracked),
            }
        }
        warn!(client.addr = %job.client, "no worker thread is running; connection closed");
    }

    /// Stops the workers, closing the connections they still serve, and waits for their threads.
    pub(crate) async fn stop(mut self) {
        self.done.cancel();
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    warn!("a worker thread had panicked");
                }
            }
        });
        let _ = joined.await;
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.done.cancel();
    }
}

/// One worker: spawns each connection it is handed onto its own runtime until `done`.
async fn work(
    shared: Arc<Shared>,
    mut jobs: mpsc::UnboundedReceiver<Queued>,
    shutdown: CancellationToken,
    done: CancellationToken,
) {
    tokio::spawn(crate::h1::sweep_idle(Arc::downgrade(&shared.h1)));
    loop {
        let queued = tokio::select! {
            biased;
            _ = done.cancelled() => return,
            q = jobs.recv() => q,
        };
        let Some(Queued { job, load, _tracked }) = queued else {
            // The accepting side is gone: what remains is the drain.
            return done.cancelled().await;
        };
        let Job {
            stream,
            client,
            tls,
            local_port,
            open,
            span,
        } = job;
        // Registers the socket with this thread's event loop.
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                debug!(parent: &span, error = %e, "cannot register the connection; closed");
                continue;
            }
        };
        let accepted = Accepted {
            shared: shared.clone(),
            client,
            tls,
            local_port,
            open,
            load: Some(load),
        };
        shared
            .tracker
            .spawn(serve_tcp(accepted, stream, shutdown.clone()).instrument(span));
    }
}

// === impl Load ===

impl Load {
    fn new(gauge: WorkerGauge) -> Self {
        gauge.inc();
        Load(gauge)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use portier_telemetry::Metrics;
    use tokio_util::task::TaskTracker;

    use super::*;

    fn workers(n: usize) -> (Workers, Vec<mpsc::UnboundedReceiver<Queued>>) {
        let mut receivers = Vec::new();
        let mut queues = Vec::new();
        for _ in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            queues.push(Queue {
                jobs: tx,
                load: WorkerGauge::default(),
            });
            receivers.push(rx);
        }
        let workers = Workers {
            queues,
            next: AtomicUsize::new(0),
            done: CancellationToken::new(),
            threads: Vec::new(),
        };
        (workers, receivers)
    }

    fn job(listener: &std::net::TcpListener, metrics: &Metrics) -> Job {
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        Job {
            client: stream.local_addr().unwrap(),
            stream,
            tls: false,
            local_port: HeaderValue::from(80u16),
            open: metrics.connections("http").open(),
            span: Span::none(),
        }
    }

    fn take(rx: &mut mpsc::UnboundedReceiver<Queued>) -> Vec<Queued> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn connections_go_to_the_least_busy_worker_and_skip_stopped_ones() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let metrics = Metrics::new();
        let tracker = TaskTracker::new();
        let (w, mut rx) = workers(3);

        for _ in 0..6 {
            w.dispatch(job(&listener, &metrics), tracker.token());
        }
        let mut held: Vec<Vec<Queued>> = rx.iter_mut().map(take).collect();
        assert_eq!(held.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
        // Queued connections keep the drain waiting.
        assert_eq!(tracker.len(), 6);

        // Worker 1's connections end: it is the least busy until it has as many as the others.
        held[1].clear();
        for _ in 0..2 {
            w.dispatch(job(&listener, &metrics), tracker.token());
        }
        let got: Vec<usize> = rx.iter_mut().map(|r| take(r).len()).collect();
        assert_eq!(got, [0, 2, 0]);

        // A worker whose thread has ended no longer receives, and loses nothing: the next takes it.
        drop(rx.remove(0));
        held.remove(0);
        for _ in 0..4 {
            w.dispatch(job(&listener, &metrics), tracker.token());
        }
        let got: Vec<usize> = rx.iter_mut().map(|r| take(r).len()).collect();
        assert_eq!(got.iter().sum::<usize>(), 4);
        // Idle as it looks, the stopped worker was tried first each time and counts nothing.
        assert_eq!(w.queues[0].load.get(), 0);
    }
}
