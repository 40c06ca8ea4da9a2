//! `portier serve`: wiring of the pipeline and the process lifecycle.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use portier_compile::{compile, Compiled, Options};
use portier_core::Severity;
use portier_dataplane::{Dataplane, DataplaneConfig};
use portier_model::{ModelStore, ProviderId};
use portier_provider_files::FileProvider;
use portier_snapshot::{RouteTable, Snapshot, SnapshotCell, TlsStore};
use portier_telemetry::{AccessLog, AccessLogTarget, Metrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::acme;
use crate::resident::release_binary_pages;
use crate::{fallback, ServeArgs};

const FILES: ProviderId = ProviderId("files");
/// Where ACME state lives without `--state-dir`.
const DEFAULT_STATE_DIR: &str = "portier-state";

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    portier_telemetry::init_tracing();
    // The control plane (and, with one worker, the data plane too) runs on a current-thread
    // runtime: it skips the work-stealing scheduler's cross-thread bookkeeping on every wake
    // (callgrind, bench/README.md). More workers are threads of the data plane's own, each
    // with a current-thread runtime (see portier_dataplane's `workers` module for why).
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().thread_name("portier");
    let runtime = builder.build().context("starting the async runtime")?;
    let result = runtime.block_on(serve(args));
    // Blocking tasks still running (a replaced snapshot waiting for its last request) end with the process.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        config,
        http_listen,
        https_listen,
        admin_listen,
        state_dir,
        class,
        access_log,
        drain_timeout,
        https_redirect_port,
        worker_threads,
    } = args;

    let fallback_cert = match &state_dir {
        Some(dir) => fallback::load_or_create(dir)?,
        None => fallback::generate()?,
    };
    let opts = Options {
        ingress_class: class.ingress_class,
        controller_name: class.controller_name,
        fallback_cert: fallback_cert.clone(),
        configmap: class.configmap,
    };
    let access_target: AccessLogTarget = access_log
        .parse()
        .map_err(|e| anyhow::anyhow!("--access-log {access_log:?}: {e}"))?;

    // Read and compile the configuration before binding anything, so a process that listens is a
    // process that routes.
    // Watch before the first scan: a file written between the scan and the watch would otherwise
    // go unnoticed until some other file changes.
    let watcher = match portier_provider_files::watch(&config) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the configuration directory; changes will not be picked up until restart");
            None
        }
    };
    let mut provider = FileProvider::new(&config);
    let mut store = ModelStore::new();
    let first = provider
        .scan()
        .with_context(|| format!("reading configuration directory {}", config.display()))?;
    store.apply(FILES, first);
    // Certificates issued before a restart are served from the first snapshot on, so nothing is
    // ordered again.
    let acme_state = state_dir.clone().unwrap_or_else(|| DEFAULT_STATE_DIR.into());
    if let Some(change) = acme::scan_state(&acme::secrets_dir(&acme_state)) {
        store.apply(acme::STATE, change);
    }
    let model = store.model();
    let objects = model.len();
    let compiled = compile(&model, &opts);
    drop(model);
    log_diagnostics(&compiled);

    let mut registry = Metrics::new();
    let acme_metrics = acme::AcmeMetrics::register(&mut registry);
    let metrics = Arc::new(registry);
    let empty = Snapshot::new(
        RouteTable::default(),
        TlsStore::builder(fallback_cert).build(),
        Vec::new(),
        Vec::new(),
    );
    let cell = Arc::new(SnapshotCell::new(empty));
    let ok = !compiled.has_errors();
    let generation = cell.publish(compiled.snapshot);
    metrics.reload(ok, generation);
    tracing::info!(generation, objects, "configuration loaded");

    let workers = match worker_threads {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let http = bind(http_listen, "http", workers)?;
    let https = bind(https_listen, "https", workers)?;
    let admin = bind(admin_listen, "admin", 1)?;
    let redirect_port = match https_redirect_port {
        Some(p) => p,
        None => https.local_addr().map(|a| a.port()).unwrap_or(443),
    };

    let access = AccessLog::start(access_target).context("opening the access log")?;
    let shutdown = CancellationToken::new();

    let metrics_text = {
        let m = metrics.clone();
        Arc::new(move || m.encode()) as portier_admin::MetricsText
    };
    // Feedback into the top of the pipeline (DESIGN.md rule 3): ACME tokens and issued certificates.
    let (inbox, inbox_rx) = tokio::sync::mpsc::unbounded_channel();
    let (published_tx, published_rx) = tokio::sync::watch::channel(generation);
    let controller = acme::Controller::new(&acme_state, cell.clone(), inbox.clone(), acme_metrics);
    let engine = controller.engine();
    let view_cell = cell.clone();
    let acme_view = Arc::new(move |view: &str| acme::admin_view(&engine, &view_cell, view)) as portier_admin::AcmeView;
    let acme_task = tokio::spawn(controller.run(published_rx, shutdown.clone()));

    let admin_task = tokio::spawn(
        portier_admin::Admin::new(cell.clone(), metrics_text)
            .with_acme(acme_view)
            .run(admin, shutdown.clone()),
    );

    let dataplane = Dataplane::new(
        cell.clone(),
        metrics.clone(),
        access.clone(),
        DataplaneConfig {
            https_redirect_port: redirect_port,
            drain_timeout: Duration::from_secs(drain_timeout),
            workers,
        },
    );
    let dataplane_task = tokio::spawn(dataplane.run(Some(http), Some(https), shutdown.clone()));

    let reloader = Reloader {
        work: Work {
            dir: config.clone(),
            provider,
            store,
            opts,
            cell: cell.clone(),
            metrics: metrics.clone(),
            published: published_tx,
        },
        inbox: inbox_rx,
    };
    let reload_task = tokio::spawn(reloader.run(watcher, shutdown.clone()));
    drop(inbox);
    let stop = shutdown_signal();
    // Start-up is done once the tasks just spawned have each run to their first wait (yielding
    // puts this task behind them); what it alone ran need not stay resident.
    for _ in 0..2 {
        tokio::task::yield_now().await;
    }
    release_binary_pages("start-up");
    // The file watcher's thread handles the events of the reads start-up made (notify reports
    // opens too) when it gets to them, sometimes after the line above: ~0.5 MiB of code run once.
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        release_binary_pages("start-up, late");
    });

    stop.await;
    tracing::info!(
        drain_timeout_s = drain_timeout,
        "shutting down: no new connections, draining requests"
    );
    shutdown.cancel();
    let _ = dataplane_task.await;
    reload_task.abort();
    acme_task.abort();
    let _ = admin_task.await;
    access.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The control loop of `serve`: on every change under the configuration directory, and on every
/// Change the ACME controller sends, scan, compile aside and publish.
struct Reloader {
    work: Work,
    /// Changes from the ACME controller (tokens, issued certificates).
    inbox: tokio::sync::mpsc::UnboundedReceiver<(ProviderId, portier_model::Change)>,
}

/// What woke the reloader.
enum Wake {
    Files,
    Inbox(Vec<(ProviderId, portier_model::Change)>),
}

/// The reloader's state, moved onto a blocking thread for each reload: scanning, compiling,
/// comparing and freeing a snapshot of 10,000 routes are each milliseconds of CPU that must not
/// run on a thread that serves requests (with `--worker-threads 1` the runtime has one).
struct Work {
    dir: std::path::PathBuf,
    provider: FileProvider,
    store: ModelStore,
    opts: Options,
    cell: Arc<SnapshotCell>,
    metrics: Arc<Metrics>,
    /// The generation just published, for the ACME controller.
    published: tokio::sync::watch::Sender<u64>,
}

impl Reloader {
    async fn run(self, watcher: Option<portier_provider_files::Watcher>, shutdown: CancellationToken) {
        let Reloader { mut work, mut inbox } = self;
        let mut watcher = watcher;
        loop {
            let wake = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = async {
                    match watcher.as_mut() {
                        Some(w) => w.changed().await,
                        None => std::future::pending().await,
                    }
                } => Wake::Files,
                m = inbox.recv() => match m {
                    Some(first) => {
                        // Apply whatever else is queued before compiling once.
                        let mut changes = vec![first];
                        while let Ok(more) = inbox.try_recv() {
                            changes.push(more);
                        }
                        Wake::Inbox(changes)
                    }
                    None => Wake::Files,
                },
            };
            work = match tokio::task::spawn_blocking(move || {
                let scanned = matches!(wake, Wake::Files);
                work.reload(wake);
                // Whatever the scan found (a change, none, an error), its code ran: give it back.
                if scanned {
                    release_binary_pages("reload");
                }
                work
            })
            .await
            {
                Ok(w) => w,
                // Only when the runtime shuts down: `reload` catches panics.
                Err(_) => return,
            };
        }
    }
}

// === impl Work ===

impl Work {
    fn reload(&mut self, wake: Wake) {
        let started = std::time::Instant::now();
        let scanned_ms = match wake {
            Wake::Inbox(changes) => {
                for (id, change) in changes {
                    self.store.apply(id, change);
                }
                None
            }
            Wake::Files => {
                let scan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.provider.scan()));
                let change = match scan {
                    Ok(Ok(change)) => change,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "reload failed; the previous configuration keeps serving");
                        self.metrics.reload(false, self.cell.load().generation());
                        return;
                    }
                    Err(_) => {
                        // Start over with a fresh provider, which re-reads every file.
                        tracing::error!("configuration scan failed; the previous configuration keeps serving");
                        self.provider = FileProvider::new(&self.dir);
                        self.metrics.reload(false, self.cell.load().generation());
                        return;
                    }
                };
                self.store.apply(FILES, change);
                Some(started.elapsed().as_millis() as u64)
            }
        };
        let model = self.store.model();
        // A panic leaves nothing half-changed here: compile only reads.
        let compiled = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compile(&model, &self.opts))) {
            Ok(c) => c,
            Err(_) => {
                tracing::error!("compile failed; the previous configuration keeps serving");
                self.metrics.reload(false, self.cell.load().generation());
                return;
            }
        };
        drop(model);
        let compiled_ms = started.elapsed().as_millis() as u64;
        if self.cell.load().same_content(&compiled.snapshot) {
            tracing::debug!(scanned_ms, compiled_ms, "configuration unchanged");
            return;
        }
        if scanned_ms.is_some() {
            log_diagnostics(&compiled);
        }
        let ok = !compiled.has_errors();
        let routes = compiled.snapshot.routes().len();
        let (generation, old) = self.cell.replace(compiled.snapshot);
        self.metrics.reload(ok, generation);
        self.published.send_replace(generation);
        match scanned_ms {
            None => tracing::debug!(generation, "published after an ACME change"),
            Some(scanned_ms) => tracing::info!(
                generation,
                routes,
                scanned_ms,
                compiled_ms,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "configuration reloaded"
            ),
        }
        // Not awaited: a request waiting minutes for its upstream must not hold up the next reload.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || retire(old))),
            Err(_) => drop(old),
        }
    }
}

/// Frees a replaced snapshot on this (blocking) thread once the requests that still hold it are
/// done, so the last reference is not dropped by a serving thread. Requests hold a snapshot until
/// their response headers are out; one still holding it after a few seconds frees it itself.
fn retire(old: Arc<Snapshot>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(old);
}

fn log_diagnostics(compiled: &Compiled) {
    for d in &compiled.diagnostics {
        let object = d.object.as_ref().map(ToString::to_string).unwrap_or_default();
        let field = d.field.as_ref().map(ToString::to_string).unwrap_or_default();
        let at = d.span.as_ref().map(ToString::to_string).unwrap_or_default();
        let help = d.help.as_deref().unwrap_or("");
        match d.severity {
            Severity::Error => tracing::error!(object, field, at, help, "{}", d.message),
            Severity::Warning => tracing::warn!(object, field, at, help, "{}", d.message),
        }
    }
}

/// A listener of the data plane with `workers` threads (see `portier_dataplane::bind`), or, with 1,
/// a plain one.
fn bind(addr: std::net::SocketAddr, name: &'static str, workers: usize) -> anyhow::Result<TcpListener> {
    let l = portier_dataplane::bind(addr, workers).with_context(|| {
        format!(
            "binding the {name} listener to {addr}: is another process using it? choose another with --{name}-listen"
        )
    })?;
    let local = l
        .local_addr()
        .with_context(|| format!("reading the {name} listener address"))?;
    tracing::info!(listener = name, addr = %local, "listening");
    Ok(l)
}

/// Registers for SIGTERM and SIGINT now, and returns the wait for either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
        async move {
            match streams {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
