//! The `portier` child process: start it on loopback, find its listeners, wait for generations,
//! and print its log when a test fails.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{self, Resp};

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_portier");

/// How long `Portier::start` waits for the three `listening` lines.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a reload may take to show up in the admin API. The file watcher waits for 100 ms of
/// quiet (at most 1 s) before scanning, so this is generous.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `portier serve`. Killed on drop; its log is printed when the test is panicking.
pub struct Portier {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

// === impl Portier ===

impl Portier {
    /// Starts `portier serve --config dir` with every listener on `127.0.0.1:0` (unless `extra`
    /// sets `--http-listen`) and
    /// `--access-log off` (unless `extra` sets `--access-log`), then waits for the `listening` line
    /// of each listener.
    pub async fn start(dir: &Path, extra: &[&str]) -> Portier {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").arg("--config").arg(dir);
        if !extra.contains(&"--http-listen") {
            cmd.args(["--http-listen", "127.0.0.1:0"]);
        }
        cmd.args(["--https-listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"]);
        if !extra.contains(&"--access-log") {
            cmd.args(["--access-log", "off"]);
        }
        cmd.args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = KillOnDrop(Some(cmd.spawn().expect("spawning the portier binary")));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.get().stderr.take().expect("stderr is piped");
        let stdout = child.get().stdout.take().expect("stdout is piped");
        collect_lines(stderr, "", log.clone());
        collect_lines(stdout, "stdout: ", log.clone());

        let started = Instant::now();
        let mut found: [Option<SocketAddr>; 3] = [None; 3];
        loop {
            {
                let lines = log.lock().expect("log lock");
                for line in lines.iter() {
                    if let Some((listener, addr)) = listening_line(line) {
                        let slot = match listener.as_str() {
                            "http" => 0,
                            "https" => 1,
                            "admin" => 2,
                            _ => continue,
                        };
                        found[slot].get_or_insert(addr);
                    }
                }
            }
            if let [Some(http), Some(https), Some(admin)] = found {
                return Portier {
                    child: child.0.take().expect("taken only here"),
                    http,
                    https,
                    admin,
                    log,
                };
            }
            let missing: Vec<&str> = ["http", "https", "admin"]
                .into_iter()
                .zip(found)
                .filter(|(_, a)| a.is_none())
                .map(|(n, _)| n)
                .collect();
            if let Ok(Some(status)) = child.get().try_wait() {
                std::thread::sleep(Duration::from_millis(50)); // let the reader threads finish
                panic!(
                    "portier exited with {status} before logging `listening` for {missing:?}; log:\n{}",
                    join(&log)
                );
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "timed out after {START_TIMEOUT:?} waiting for portier's `listening` log lines for {missing:?}; log:\n{}",
                    join(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the child has an inotify watch installed (Linux: read from `/proc`).
    ///
    /// Workaround: `portier serve` logs `listening` before its reload task has started watching
    /// the configuration directory, so a file written right after startup can be missed for good
    /// (see `reload::change_right_after_startup_is_picked_up`). Tests that change files call this
    /// first, so they test what they are about and not that race.
    pub async fn wait_for_watcher(&self) {
        let fd_dir = format!("/proc/{}/fd", self.pid());
        if !Path::new(&fd_dir).exists() {
            tokio::time::sleep(Duration::from_millis(500)).await; // no /proc: give it time instead
            return;
        }
        let pid = self.pid();
        eventually(
            Duration::from_secs(5),
            "portier's inotify watch on the configuration directory",
            || async move { has_inotify_watch(pid).then_some(()) },
        )
        .await;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's stderr and stdout so far, one line per entry.
    pub fn log(&self) -> String {
        join(&self.log)
    }

    /// Sends SIGTERM (through `kill(1)`: the workspace denies `unsafe`, so no `libc::kill`).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("running kill -TERM");
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid());
    }

    /// Waits for the process to exit, polling; panics naming `what` after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("polling the portier child") {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "portier did not exit within {timeout:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Resp {
        client::get(self.admin, "admin", path).await
    }

    pub async fn admin_json(&self, path: &str) -> Value {
        let r = self.admin_get(path).await;
        assert_eq!(r.status, 200, "GET {path} on the admin listener: {}", r.text());
        r.json()
    }

    pub async fn routes(&self) -> Value {
        self.admin_json("/api/v1/routes").await
    }

    pub async fn diagnostics(&self) -> Value {
        self.admin_json("/api/v1/diagnostics").await
    }

    /// Polls `/api/v1/routes` until the live generation is at least `n`; returns that view.
    pub async fn wait_for_generation(&self, n: u64) -> Value {
        let started = Instant::now();
        loop {
            let routes = self.routes().await;
            let generation = routes["generation"].as_u64().unwrap_or(0);
            if generation >= n {
                return routes;
            }
            assert!(
                started.elapsed() < RELOAD_TIMEOUT,
                "timed out after {RELOAD_TIMEOUT:?} waiting for generation {n} on /api/v1/routes; live generation is {generation}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A plain HTTP/1.1 `GET` on the HTTP listener, on a fresh connection.
    pub async fn get(&self, host: &str, path: &str) -> Resp {
        client::get(self.http, host, path).await
    }
}

impl Drop for Portier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // Give the reader threads a moment to drain the pipes.
            std::thread::sleep(Duration::from_millis(50));
            eprintln!(
                "---- portier log (pid {}, http {}, https {}, admin {}) ----\n{}\n---- end of portier log ----",
                self.child.id(),
                self.http,
                self.https,
                self.admin,
                self.log()
            );
        }
    }
}

/// Kills a child that is still starting when the start is abandoned (panic, or a test timeout
/// dropping the future): `std::process::Child` does not kill on drop.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn get(&mut self) -> &mut Child {
        self.0.as_mut().expect("present until handed to Portier")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a test body with a deadline, so a hang fails with a message instead of stalling the run.
pub async fn within<F: Future>(secs: u64, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("test timed out after {secs} s: {what}"),
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether process `pid` holds an inotify instance with at least one watch.
fn has_inotify_watch(pid: u32) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        let is_inotify = std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:inotify");
        is_inotify
            && std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()))
                .is_ok_and(|info| info.lines().any(|l| l.starts_with("inotify wd:")))
    })
}

/// Parses `{"fields":{"message":"listening","listener":"http","addr":"127.0.0.1:41234"}}`.
fn listening_line(line: &str) -> Option<(String, SocketAddr)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    let listener = fields.get("listener")?.as_str()?.to_owned();
    let addr = fields.get("addr")?.as_str()?.parse().ok()?;
    Some((listener, addr))
}

fn collect_lines(pipe: impl Read + Send + 'static, prefix: &'static str, log: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            log.lock().expect("log lock").push(format!("{prefix}{line}"));
        }
    });
}

fn join(log: &Mutex<Vec<String>>) -> String {
    log.lock().expect("log lock").join("\n")
}
