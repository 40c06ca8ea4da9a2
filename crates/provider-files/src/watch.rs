//! Tells the caller when anything under the manifest directory changed, so it can scan again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{Config, EventKind, PollWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use crate::ProviderError;

/// After the first event, wait until the directory has been quiet this long: an editor's
/// save-by-rename or a `cp -r` is a burst of events that should cause one scan. The events of
/// such a burst come microseconds to a few milliseconds apart; the wait is half of the time an
/// edit may take to go live at ten thousand hosts (200 ms).
const QUIET: Duration = Duration::from_millis(50);

/// A steady stream of writes must not postpone the scan forever.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Used when the platform watcher cannot start (inotify limits, some network file systems).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Watches a manifest directory. Dropping it stops the watch.
pub struct Watcher {
    rx: mpsc::Receiver<()>,
    /// Held only to keep the watch alive.
    _inner: Box<dyn notify::Watcher + Send>,
}

/// Starts watching `dir` recursively, including subdirectories created later. A path to a single
/// file watches the file's directory, so replacing the file by rename is seen.
///
/// Uses the platform's watcher; if it cannot start, falls back to polling every second and logs
/// a warning. Fails only when neither can watch the path.
pub fn watch(dir: &Path) -> Result<Watcher, ProviderError> {
    let (target, mode) = if dir.is_file() {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (parent.to_owned(), RecursiveMode::NonRecursive)
    } else {
        (dir.to_owned(), RecursiveMode::Recursive)
    };
    // Capacity 1: one pending notification says "scan again" as well as a thousand would.
    let (tx, rx) = mpsc::channel(1);
    let handler = |tx: mpsc::Sender<()>| {
        move |event: notify::Result<notify::Event>| match event {
            // Reads, including our own scan's, change nothing; reacting to them would loop.
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(_) => {
                let _ = tx.try_send(());
            }
            // An error can mean lost events (inotify queue overflow): a rescan makes up for them.
            Err(e) => {
                tracing::warn!(error = %e, "file watch reported an error; scanning again");
                let _ = tx.try_send(());
            }
        }
    };
    let native = notify::recommended_watcher(handler(tx.clone())).and_then(|mut w| {
        w.watch(&target, mode)?;
        Ok(w)
    });
    let inner: Box<dyn notify::Watcher + Send> = match native {
        Ok(w) => Box::new(w),
        Err(e) => {
            tracing::warn!(dir = %target.display(), error = %e, "cannot use the platform file watcher; polling every second instead");
            let config = Config::default().with_poll_interval(POLL_INTERVAL);
            let mut w = PollWatcher::new(handler(tx), config).map_err(|e| watch_error(&target, e))?;
            w.watch(&target, mode).map_err(|e| watch_error(&target, e))?;
            Box::new(w)
        }
    };
    Ok(Watcher { rx, _inner: inner })
}

// === impl Watcher ===

impl Watcher {
    /// Resolves after something under the directory changed and the burst of events has settled.
    pub async fn changed(&mut self) {
        if self.rx.recv().await.is_none() {
            // The sender lives in the watcher we hold, so this cannot happen; never resolving
            // keeps a `loop { changed().await; scan() }` from spinning if it somehow did.
            std::future::pending::<()>().await;
        }
        let deadline = Instant::now() + MAX_DELAY;
        while Instant::now() < deadline {
            match timeout(QUIET, self.rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

fn watch_error(path: &Path, source: notify::Error) -> ProviderError {
    ProviderError::Watch {
        path: PathBuf::from(path),
        source,
    }
}
