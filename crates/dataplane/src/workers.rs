//! Worker threads, each running a single-threaded runtime of its own. Each worker accepts on a
//! listening socket of its own, bound to the same address with `SO_REUSEPORT` ([`bind`]), and the
//! kernel spreads new connections over them. A connection then stays on that thread: its
//! requests, its HTTP/2 streams and its upstream connections (each worker has its own pools) are
//! never woken from another thread, and no task is stolen between threads.
//!
//! Given listeners without the option (a caller's own), the runtime that calls
//! [`Dataplane::run`](crate::Dataplane::run) accepts instead, and hands each connection with its
//! socket to the worker serving the fewest connections. That costs two thread wake-ups per
//! connection: with a new connection per request, 41 µs of CPU per request against 32 for
//! tokio's multi-thread runtime (`bench/README.md`, "Runtime shape"), which is why it is not the
//! way `portier serve` runs.
//!
//! Why not tokio's work-stealing runtime: this shape spent no more CPU per request than the
//! multi-thread runtime with as many workers (0.97× with keep-alive, 0.91–0.97× with a new
//! connection per request), within 4% of as many processes sharing nothing, with no task
//! moving between threads (`bench/runtime-shape.sh`, bench/README.md, "Runtime shape").
//!
//! What `SO_REUSEPORT` gives up: the kernel spreads connections by a hash of their addresses,
//! blind to how busy each worker is (a few long-lived connections can share one worker). And a
//! port bound with it can be joined by any process of the same user that sets it too; [`bind`]
//! first binds without it, so that a second portier, or anything else already listening there,
//! fails with "address in use" as it would without workers.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use portier_telemetry::WorkerGauge;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::{debug, warn, Span};

use crate::server::{accept_loop, listener, spawn_serve_tcp, Accepted, Dest, Shared};

/// The running workers; dropping this stops them (see [`Workers::stop`] to wait for that).
pub(crate) struct Workers {
    queues: Vec<Queue>,
    /// Where the search for the least busy worker starts, so that ties rotate.
    next: AtomicUsize,
    /// Cancelled once the drain is over: each worker then drops what is left and exits.
    done: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

/// An accepted connection on its way to a worker, its socket out of any event loop. The worker
/// gives it its own [`Shared`] and counts it against itself.
pub(crate) struct Job {
    pub(crate) accepted: Accepted,
    pub(crate) stream: std::net::TcpStream,
    pub(crate) span: Span,
}

struct Queue {
    jobs: mpsc::UnboundedSender<Msg>,
    /// Open connections of the worker: `portier_worker_connections{worker="i"}`.
    load: WorkerGauge,
}

/// Listening sockets not yet registered with a runtime; `true` for HTTPS.
pub(crate) type Sockets = Vec<(std::net::TcpListener, bool)>;

/// What a worker is handed.
enum Msg {
    Conn(Queued),
    /// A listening socket to accept on (HTTPS when the flag is set).
    Listen(std::net::TcpListener, bool),
}

struct Queued {
    job: Job,
    /// Keeps the drain waiting from the accept until the worker has spawned the connection's task
    /// (which the tracker then counts itself).
    _tracked: TaskTrackerToken,
}

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
            let load = shared.metrics.worker_connections(u32::try_from(i).unwrap_or(u32::MAX));
            let (own, shutdown, done) = (load.clone(), shutdown.clone(), workers.done.clone());
            let thread = std::thread::Builder::new()
                .name(format!("portier-w{i}"))
                .spawn(move || runtime.block_on(work(worker, rx, own, shutdown, done)))?;
            workers.queues.push(Queue { jobs: tx, load });
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
            // A count left from a worker that refused it is dropped here.
            job.accepted.load = Some(q.load.open());
            let queued = Queued { job, _tracked: tracked };
            match q.jobs.send(Msg::Conn(queued)) {
                Ok(()) => return,
                Err(mpsc::error::SendError(Msg::Conn(back))) => (job, tracked) = (back.job, back._tracked),
                Err(mpsc::error::SendError(Msg::Listen(..))) => return,
            }
        }
        warn!(client.addr = %job.accepted.client, "no worker thread is running; connection closed");
    }

    /// Gives worker `i` the listening sockets `per_worker[i]` to accept on.
    pub(crate) fn listen(&self, per_worker: Vec<Sockets>) {
        for (q, sockets) in self.queues.iter().zip(per_worker) {
            for (socket, tls) in sockets {
                if q.jobs.send(Msg::Listen(socket, tls)).is_err() {
                    warn!("a worker thread has stopped; its share of the connections goes to the others");
                }
            }
        }
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

/// One worker: accepts on the sockets it is given, and serves the connections it accepts or is
/// handed, on its own runtime until `done`.
async fn work(
    shared: Arc<Shared>,
    mut jobs: mpsc::UnboundedReceiver<Msg>,
    load: WorkerGauge,
    shutdown: CancellationToken,
    done: CancellationToken,
) {
    tokio::spawn(crate::h1::sweep_idle(Arc::downgrade(&shared.h1)));
    loop {
        let msg = tokio::select! {
            biased;
            _ = done.cancelled() => return,
            m = jobs.recv() => m,
        };
        let queued = match msg {
            Some(Msg::Conn(queued)) => queued,
            Some(Msg::Listen(socket, tls)) => {
                // Registers the socket with this thread's event loop.
                match TcpListener::from_std(socket) {
                    Ok(socket) => drop(tokio::spawn(accept_loop(
                        shared.clone(),
                        listener(&shared, socket, tls),
                        shutdown.clone(),
                        Dest::Here(Some(load.clone())),
                    ))),
                    Err(e) => warn!(error = %e, "cannot accept on a worker's socket; the others take its share"),
                }
                continue;
            }
            // The accepting side is gone: what remains is the drain.
            None => return done.cancelled().await,
        };
        let Queued {
            job: Job {
                mut accepted,
                stream,
                span,
            },
            _tracked,
        } = queued;
        // Registers the socket with this thread's event loop.
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                debug!(parent: &span, error = %e, "cannot register the connection; closed");
                continue;
            }
        };
        accepted.shared = shared.clone();
        spawn_serve_tcp(accepted, stream, span, &shutdown);
    }
}

/// Binds a listening socket for a data plane of `workers` worker threads. With more than one it
/// carries `SO_REUSEPORT`, so that [`shard`] can give every worker a socket of its own on the same
/// address; a socket without the option is bound first and closed, so that an address in use
/// fails as it would without workers (the option would otherwise let a second portier join).
/// With port 0, the port the system picked. Call within a tokio runtime.
pub fn bind(addr: SocketAddr, workers: usize) -> io::Result<TcpListener> {
    let socket = if workers > 1 {
        let probe = listening(addr, false, None)?;
        let picked = probe.local_addr()?.as_socket().unwrap_or(addr);
        drop(probe);
        listening(picked, true, None)?
    } else {
        listening(addr, false, None)?
    };
    TcpListener::from_std(socket.into())
}

/// A non-blocking listening socket on `addr`, as tokio's `TcpListener::bind` makes it
/// (`SO_REUSEADDR`, so that a restart binds despite connections in TIME_WAIT; a backlog of 1024),
/// with `TCP_NODELAY`, which the sockets it accepts inherit on Linux.
fn listening(addr: SocketAddr, reuse_port: bool, only_v6: Option<bool>) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if let Some(only) = only_v6 {
        socket.set_only_v6(only)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

/// Per worker, the listening sockets it accepts on: `sockets` themselves for the first, and for
/// each other one a socket of its own on the same address. `Err` gives `sockets` back when they
/// do not carry `SO_REUSEPORT` (see [`bind`]) or another socket cannot be bound.
pub(crate) fn shard(sockets: Vec<(TcpListener, bool)>, n: usize) -> Result<Vec<Sockets>, Vec<(TcpListener, bool)>> {
    let siblings = |l: &TcpListener| -> io::Result<Vec<std::net::TcpListener>> {
        let own = SockRef::from(l);
        if !own.reuse_port()? {
            return Err(io::Error::other("the listener was bound without SO_REUSEPORT"));
        }
        let addr = l.local_addr()?;
        let only_v6 = if addr.is_ipv6() { Some(own.only_v6()?) } else { None };
        (1..n).map(|_| listening(addr, true, only_v6).map(Into::into)).collect()
    };
    let mut others = Vec::with_capacity(sockets.len());
    for (l, _) in &sockets {
        match siblings(l) {
            Ok(s) => others.push(s),
            Err(e) => {
                debug!(error = %e, "accepting on one thread, handing connections to the workers");
                return Err(sockets);
            }
        }
    }
    let mut per_worker: Vec<Sockets> = (0..n).map(|_| Vec::new()).collect();
    for ((l, tls), siblings) in sockets.into_iter().zip(others) {
        match l.into_std() {
            Ok(own) => per_worker[0].push((own, tls)),
            // The others still accept on the address.
            Err(e) => warn!(error = %e, "cannot move a listener to a worker"),
        }
        for (i, s) in siblings.into_iter().enumerate() {
            per_worker[i + 1].push((s, tls));
        }
    }
    Ok(per_worker)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::HeaderValue;
    use portier_snapshot::{CertEntry, RouteTable, Snapshot, SnapshotCell, TlsStore};
    use portier_telemetry::{AccessLog, Metrics};
    use tokio_util::task::TaskTracker;

    use crate::DataplaneConfig;

    use super::*;

    fn workers(n: usize) -> (Workers, Vec<mpsc::UnboundedReceiver<Msg>>) {
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

    /// What the accepting side holds: an empty snapshot with a self-signed fallback certificate.
    fn shared() -> Arc<Shared> {
        let generated = rcgen::generate_simple_self_signed(vec!["fallback.invalid".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified =
            rustls::sign::CertifiedKey::from_der(vec![generated.cert.der().clone()], key, &provider).unwrap();
        let fallback = CertEntry {
            certified: Arc::new(certified),
            source: Arc::from("test/fallback"),
        };
        let snapshot = Snapshot::new(
            RouteTable::default(),
            TlsStore::builder(fallback).build(),
            vec![],
            vec![],
        );
        Arc::new(Shared::new(
            Arc::new(SnapshotCell::new(snapshot)),
            Arc::new(Metrics::new()),
            AccessLog::off(),
            DataplaneConfig::default(),
        ))
    }

    fn job(listener: &std::net::TcpListener, shared: &Arc<Shared>) -> Job {
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        Job {
            accepted: Accepted {
                shared: shared.clone(),
                client: stream.local_addr().unwrap(),
                tls: false,
                local_port: HeaderValue::from(80u16),
                open: shared.metrics.connections("http").open(),
                load: None,
                nodelay: false,
            },
            stream,
            span: Span::none(),
        }
    }

    fn take(rx: &mut mpsc::UnboundedReceiver<Msg>) -> Vec<Msg> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn connections_go_to_the_least_busy_worker_and_skip_stopped_ones() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let shared = shared();
        let tracker = TaskTracker::new();
        let (w, mut rx) = workers(3);

        for _ in 0..6 {
            w.dispatch(job(&listener, &shared), tracker.token());
        }
        let mut held: Vec<Vec<Msg>> = rx.iter_mut().map(take).collect();
        assert_eq!(held.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
        // Queued connections keep the drain waiting.
        assert_eq!(tracker.len(), 6);

        // Worker 1's connections end: it is the least busy until it has as many as the others.
        held[1].clear();
        for _ in 0..2 {
            w.dispatch(job(&listener, &shared), tracker.token());
        }
        let got: Vec<usize> = rx.iter_mut().map(|r| take(r).len()).collect();
        assert_eq!(got, [0, 2, 0]);

        // A worker whose thread has ended no longer receives, and loses nothing: the next takes it.
        drop(rx.remove(0));
        held.remove(0);
        for _ in 0..4 {
            w.dispatch(job(&listener, &shared), tracker.token());
        }
        let got: Vec<usize> = rx.iter_mut().map(|r| take(r).len()).collect();
        assert_eq!(got.iter().sum::<usize>(), 4);
        // Idle as it looks, the stopped worker was tried first each time and counts nothing.
        assert_eq!(w.queues[0].load.get(), 0);
    }

    #[tokio::test]
    async fn bound_for_workers_every_worker_gets_a_socket_on_the_address() {
        let l = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let addr = l.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let per_worker = match shard(vec![(l, true)], 3) {
            Ok(p) => p,
            Err(_) => panic!("a listener from bind() must shard"),
        };
        assert_eq!(per_worker.len(), 3);
        for sockets in &per_worker {
            assert_eq!(sockets.len(), 1);
            assert_eq!(sockets[0].0.local_addr().unwrap(), addr);
            assert!(sockets[0].1);
        }
        // The kernel spreads connections over the three; each is accepted by one of them, with
        // TCP_NODELAY from its listener (the data plane relies on it to skip a system call).
        let clients: Vec<_> = (0..30).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let accepted: usize = per_worker
            .iter()
            .map(|s| {
                std::iter::from_fn(|| s[0].0.accept().ok())
                    .inspect(|(conn, _)| assert!(conn.nodelay().unwrap(), "TCP_NODELAY not inherited"))
                    .count()
            })
            .sum();
        assert_eq!(accepted, clients.len());
    }

    #[tokio::test]
    async fn an_address_in_use_is_refused_with_or_without_workers() {
        let first = bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = first.local_addr().unwrap();
        for workers in [1, 2, 4] {
            let e = bind(addr, workers).map(|_| ()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "workers={workers}");
        }
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e = bind(plain.local_addr().unwrap(), 2).map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn listeners_without_reuse_port_are_given_back() {
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = plain.local_addr().unwrap();
        let back = match shard(vec![(plain, false)], 2) {
            Ok(_) => panic!("a plain listener cannot be shared"),
            Err(back) => back,
        };
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].0.local_addr().unwrap(), addr);
    }
}
