//! The access log: one JSON object per answered request, written by a background task.
//!
//! The request path only does a `try_send` on a bounded channel: when the writer falls behind,
//! records are dropped and counted instead of slowing requests down. The writer batches records
//! into one buffer and writes it at least every [`FLUSH_EVERY`], so a line is on disk within 100 ms.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::TelemetryError;

/// Where access-log records go, as the CLI spells it: `off`, `stdout`, or a file path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    /// Appended to, created when missing.
    File(PathBuf),
}

/// A cheap handle to the access-log writer; clone it into every connection.
#[derive(Clone, Debug)]
pub struct AccessLog {
    inner: Option<Arc<Inner>>,
}

/// One answered request. Field names and order are a stable schema: log pipelines parse them.
#[derive(Debug, Clone, Serialize)]
pub struct AccessRecord {
    /// When the request headers arrived; RFC 3339, UTC, milliseconds.
    #[serde(serialize_with = "serialize_time")]
    pub time: SystemTime,
    /// Client address as `ip:port`.
    pub client: SocketAddr,
    /// Borrowed for the standard methods, so the request path allocates nothing for them.
    pub method: Cow<'static, str>,
    /// The `Host` header or `:authority`, as received.
    pub host: Box<str>,
    /// Path and query as received.
    pub path: Box<str>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub protocol: &'static str,
    pub status: u16,
    /// The endpoint the request went to; null when the gateway answered itself.
    pub upstream: Option<SocketAddr>,
    /// `namespace/name` of the Ingress; empty when no route matched.
    pub ingress: Arc<str>,
    /// The route's backend; empty when no route matched.
    pub service: Arc<str>,
    /// From request headers to the end of the response body.
    pub duration_ms: f64,
    /// Response body bytes sent.
    pub bytes_sent: u64,
    /// Request body bytes received.
    pub bytes_received: u64,
    pub tls: bool,
    pub user_agent: Option<Box<str>>,
    /// The gateway error kind (`no-route`, `upstream-timeout`, …); null when none.
    pub error: Option<&'static str>,
}

struct Inner {
    tx: mpsc::Sender<AccessRecord>,
    dropped: AtomicU64,
    writer: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

/// Records buffered between the request path and the writer.
const CHANNEL_CAPACITY: usize = 16 * 1024;
/// The longest a record waits in memory before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Write early when this much is buffered, to bound memory under load.
const FLUSH_BYTES: usize = 64 * 1024;
/// Records taken from the channel per wake-up.
const BATCH: usize = 256;

// === impl AccessLogTarget ===

impl FromStr for AccessLogTarget {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Err(TelemetryError::EmptyAccessLogTarget),
            "off" => Ok(AccessLogTarget::Off),
            "stdout" | "-" => Ok(AccessLogTarget::Stdout),
            path => Ok(AccessLogTarget::File(PathBuf::from(path))),
        }
    }
}

// === impl AccessLog ===

impl AccessLog {
    /// Starts the writer task for `target` on the current tokio runtime. Fails when the file
    /// cannot be opened or when called outside a runtime. `Off` starts nothing.
    pub fn start(target: AccessLogTarget) -> Result<AccessLog, TelemetryError> {
        Self::start_with_capacity(target, CHANNEL_CAPACITY)
    }

    /// A handle that logs nothing.
    pub fn off() -> AccessLog {
        AccessLog { inner: None }
    }

    /// Whether records are written; when false the caller should not build them at all.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues a record without waiting. When the writer is behind or stopped, the record is
    /// dropped and counted in [`dropped`](Self::dropped).
    pub fn log(&self, record: AccessRecord) {
        if let Some(inner) = &self.inner {
            if inner.tx.try_send(record).is_err() {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records dropped because the channel was full or the writer had stopped.
    pub fn dropped(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| i.dropped.load(Ordering::Relaxed))
    }

    /// Writes every queued record, flushes, and stops the writer. Records logged afterwards are
    /// dropped. Calling it again does nothing.
    pub async fn shutdown(&self) {
        let Some(inner) = &self.inner else { return };
        // Take the writer out under the lock, then await without holding it.
        let writer = match inner.writer.lock() {
            Ok(mut w) => w.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some((stop, task)) = writer {
            let _ = stop.send(());
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "access log writer ended abnormally");
            }
        }
    }

    fn start_with_capacity(target: AccessLogTarget, capacity: usize) -> Result<AccessLog, TelemetryError> {
        let out: Box<dyn AsyncWrite + Send + Unpin> = match target {
            AccessLogTarget::Off => return Ok(Self::off()),
            AccessLogTarget::Stdout => Box::new(tokio::io::stdout()),
            AccessLogTarget::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&path)
                    .map_err(|source| TelemetryError::OpenAccessLog { path, source })?;
                Box::new(tokio::fs::File::from_std(file))
            }
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let (tx, rx) = mpsc::channel(capacity);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = runtime.spawn(write_loop(rx, out, stop_rx));
        Ok(AccessLog {
            inner: Some(Arc::new(Inner {
                tx,
                dropped: AtomicU64::new(0),
                writer: Mutex::new(Some((stop_tx, task))),
            })),
        })
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<AccessRecord>,
    mut out: Box<dyn AsyncWrite + Send + Unpin>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut buf = Vec::with_capacity(FLUSH_BYTES);
    let mut batch = Vec::with_capacity(BATCH);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break; // every handle is gone
                }
                for record in batch.drain(..) {
                    encode(&record, &mut buf);
                }
                if buf.len() >= FLUSH_BYTES {
                    write_out(&mut out, &mut buf, &mut failing).await;
                }
            }
            _ = tick.tick() => {
                if !buf.is_empty() {
                    write_out(&mut out, &mut buf, &mut failing).await;
                }
            }
            // Err means every handle was dropped without shutdown: stop the same way.
            _ = &mut stop => {
                rx.close();
                while let Ok(record) = rx.try_recv() {
                    encode(&record, &mut buf);
                }
                break;
            }
        }
    }
    write_out(&mut out, &mut buf, &mut failing).await;
}

fn encode(record: &AccessRecord, buf: &mut Vec<u8>) {
    // Serializing plain fields into a Vec cannot fail; if it ever did, skip the line rather than
    // write half of it.
    let start = buf.len();
    if encode_line(record, buf).is_ok() {
        buf.push(b'\n');
    } else {
        buf.truncate(start);
    }
}

/// The same JSON as `serde_json::to_writer(record)` (the derived `Serialize` is the schema;
/// a test holds them equal), written field by field: strings that need no escaping, which is
/// nearly all of them, are copied as they are instead of going through serde_json's escaper byte
/// by byte (that escaper was most of the access log's cost per request under callgrind).
fn encode_line(r: &AccessRecord, buf: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    buf.extend_from_slice(b"{\"time\":\"");
    crate::time::write_rfc3339_millis(r.time, buf);
    buf.push(b'"');
    buf.extend_from_slice(b",\"client\":");
    json_display(buf, &r.client);
    buf.extend_from_slice(b",\"method\":");
    json_str(buf, &r.method)?;
    buf.extend_from_slice(b",\"host\":");
    json_str(buf, &r.host)?;
    buf.extend_from_slice(b",\"path\":");
    json_str(buf, &r.path)?;
    buf.extend_from_slice(b",\"protocol\":");
    json_known(buf, r.protocol)?;
    buf.extend_from_slice(b",\"status\":");
    push_u64(buf, u64::from(r.status));
    buf.extend_from_slice(b",\"upstream\":");
    match &r.upstream {
        Some(a) => json_display(buf, a),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"ingress\":");
    json_str(buf, &r.ingress)?;
    buf.extend_from_slice(b",\"service\":");
    json_str(buf, &r.service)?;
    buf.extend_from_slice(b",\"duration_ms\":");
    serde_json::to_writer(&mut *buf, &r.duration_ms)?;
    buf.extend_from_slice(b",\"bytes_sent\":");
    push_u64(buf, r.bytes_sent);
    buf.extend_from_slice(b",\"bytes_received\":");
    push_u64(buf, r.bytes_received);
    buf.extend_from_slice(if r.tls { b",\"tls\":true" } else { b",\"tls\":false" });
    buf.extend_from_slice(b",\"user_agent\":");
    match &r.user_agent {
        Some(ua) => json_str(buf, ua)?,
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"error\":");
    match r.error {
        Some(e) => json_known(buf, e)?,
        None => buf.extend_from_slice(b"null"),
    }
    buf.push(b'}');
    Ok(())
}

/// A JSON string: copied when it has nothing JSON escapes (`"`, `\`, control characters; the
/// rest of UTF-8 is written as is, as serde_json does), else escaped by serde_json.
fn json_str(buf: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    // A fold without early exit: the compiler turns it into a vector loop.
    let escapes = s
        .bytes()
        .fold(false, |found, b| found | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if escapes {
        serde_json::to_writer(buf, s)
    } else {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
        Ok(())
    }
}

/// A JSON string from the gateway's own fixed set (protocol names, error kinds), which need no
/// escaping: the per-byte check is skipped for the common names.
fn json_known(buf: &mut Vec<u8>, s: &'static str) -> Result<(), serde_json::Error> {
    match s {
        "HTTP/1.1" => buf.extend_from_slice(b"\"HTTP/1.1\""),
        "HTTP/2.0" => buf.extend_from_slice(b"\"HTTP/2.0\""),
        "HTTP/1.0" => buf.extend_from_slice(b"\"HTTP/1.0\""),
        other => return json_str(buf, other),
    }
    Ok(())
}

/// An address as a JSON string, as `Display` writes it (its text has no character JSON
/// escapes). IPv4 is written digit by digit: `write!` costs more than the rest of the line.
fn json_display(buf: &mut Vec<u8>, a: &SocketAddr) {
    buf.push(b'"');
    match a {
        SocketAddr::V4(v4) => {
            // Built on the stack and copied once: `255.255.255.255:65535` is 21 bytes.
            let mut text = [0u8; 21];
            let mut n = 0;
            let mut put = |d: u8| {
                text[n] = d;
                n += 1;
            };
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    put(b'.');
                }
                if octet >= 100 {
                    put(b'0' + octet / 100);
                }
                if octet >= 10 {
                    put(b'0' + octet / 10 % 10);
                }
                put(b'0' + octet % 10);
            }
            put(b':');
            let port = v4.port();
            let mut started = false;
            for div in [10_000u16, 1_000, 100, 10, 1] {
                let digit = (port / div % 10) as u8;
                if started || digit != 0 || div == 1 {
                    put(b'0' + digit);
                    started = true;
                }
            }
            buf.extend_from_slice(&text[..n]);
        }
        SocketAddr::V6(_) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail.
            let _ = write!(buf, "{a}");
        }
    }
    buf.push(b'"');
}

/// `n` in decimal, as serde_json writes integers.
fn push_u64(buf: &mut Vec<u8>, n: u64) {
    let mut digits = [0; 20];
    buf.extend_from_slice(portier_core::decimal(n, &mut digits));
}

async fn write_out(out: &mut Box<dyn AsyncWrite + Send + Unpin>, buf: &mut Vec<u8>, failing: &mut bool) {
    let result = async {
        out.write_all(buf).await?;
        out.flush().await
    }
    .await;
    buf.clear();
    match result {
        // Warn once per failure streak, not every 100 ms while the disk stays full.
        Err(e) if !*failing => {
            *failing = true;
            tracing::warn!(error = %e, "access log write failed; records are being lost");
        }
        Err(_) => {}
        Ok(()) => *failing = false,
    }
}

fn serialize_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::time::rfc3339_millis(*t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: u16) -> AccessRecord {
        AccessRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_735_689_600_123),
            client: "10.0.0.1:5555".parse().unwrap(),
            method: "GET".into(),
            host: "shop.example".into(),
            path: "/cart?x=1".into(),
            protocol: "HTTP/1.1",
            status,
            upstream: Some("10.1.0.7:8080".parse().unwrap()),
            ingress: "shop/web".into(),
            service: "shop/web:80".into(),
            duration_ms: 1.5,
            bytes_sent: 12,
            bytes_received: 0,
            tls: false,
            user_agent: Some("curl/8".into()),
            error: None,
        }
    }

    fn temp_path(name: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        std::env::temp_dir().join(format!("portier-{name}-{}-{nanos}.log", std::process::id()))
    }

    #[test]
    fn parses_cli_values() {
        let cases = [
            ("off", AccessLogTarget::Off),
            ("stdout", AccessLogTarget::Stdout),
            (
                "/var/log/portier.log",
                AccessLogTarget::File("/var/log/portier.log".into()),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<AccessLogTarget>().unwrap(), want, "{s}");
        }
        assert!("".parse::<AccessLogTarget>().is_err());
    }

    #[test]
    fn record_schema_is_stable() {
        let line = serde_json::to_string(&record(200)).unwrap();
        assert_eq!(
            line,
            r#"{"time":"2025-01-01T00:00:00.123Z","client":"10.0.0.1:5555","method":"GET","host":"shop.example","path":"/cart?x=1","protocol":"HTTP/1.1","status":200,"upstream":"10.1.0.7:8080","ingress":"shop/web","service":"shop/web:80","duration_ms":1.5,"bytes_sent":12,"bytes_received":0,"tls":false,"user_agent":"curl/8","error":null}"#
        );
    }

    #[test]
    fn line_encoder_writes_what_serde_writes() {
        let tricky = [
            "plain",
            "",
            "quote\"in",
            "back\\slash",
            "tab\tand\nnewline",
            "\u{1}\u{1f}\u{7f}",
            "unicode: grüße ✓ 🦀",
            "/p?q=%22x%22&y=<script>",
        ];
        for (i, s) in tricky.iter().enumerate() {
            let mut r = record(if i % 2 == 0 { 200 } else { 502 });
            r.method = (*s).into();
            r.host = (*s).into();
            r.path = (*s).into();
            r.user_agent = (i % 3 != 0).then(|| (*s).into());
            r.upstream = (i % 2 == 0).then(|| "[2001:db8::1]:443".parse().unwrap());
            r.error = (i % 2 == 1).then_some("upstream-reset");
            r.ingress = Arc::from(*s);
            r.duration_ms = [0.0, 1.5, 12345.678, f64::NAN][i % 4];
            r.tls = i % 2 == 0;
            r.client = ["0.0.0.0:0", "255.255.255.255:65535", "10.20.3.4:80", "[::1]:9"][i % 4]
                .parse()
                .unwrap();
            r.bytes_sent = [0, 9, 10, u64::MAX][i % 4];
            r.bytes_received = [1_000_000, 99, 0, 12_345][i % 4];
            r.status = [100, 200, 404, 599][i % 4];
            let mut ours = Vec::new();
            encode(&r, &mut ours);
            let mut want = serde_json::to_vec(&r).unwrap();
            want.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&want),
                "case {i}"
            );
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for octet in 0..=255u8 {
            for port in [0u16, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 65535] {
                let a = SocketAddr::from(([octet, 255 - octet, octet / 3, 7], port));
                let mut out = Vec::new();
                json_display(&mut out, &a);
                assert_eq!(String::from_utf8_lossy(&out), format!("\"{a}\""));
            }
        }
    }

    #[tokio::test]
    async fn writes_lines_and_flushes_on_shutdown() {
        let path = temp_path("flush");
        let log = AccessLog::start(AccessLogTarget::File(path.clone())).unwrap();
        assert!(log.is_enabled());
        for status in [200, 404, 503] {
            log.log(record(status));
        }
        log.shutdown().await;
        log.shutdown().await; // idempotent
        log.log(record(500)); // after shutdown: dropped, not written
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let statuses: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(statuses, [200, 404, 503]);
        assert_eq!(log.dropped(), 1);
    }

    #[tokio::test]
    async fn flushes_within_the_interval_without_shutdown() {
        let path = temp_path("interval");
        let log = AccessLog::start(AccessLogTarget::File(path.clone())).unwrap();
        log.log(record(200));
        let mut text = String::new();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            text = std::fs::read_to_string(&path).unwrap();
            if !text.is_empty() {
                break;
            }
        }
        log.shutdown().await;
        let _ = std::fs::remove_file(&path);
        assert_eq!(text.lines().count(), 1, "record not flushed within 1s: {text:?}");
    }

    #[tokio::test]
    async fn full_channel_drops_and_counts() {
        let path = temp_path("full");
        // Current-thread runtime: the writer cannot run until this task yields, so the second and
        // third records find the channel full.
        let log = AccessLog::start_with_capacity(AccessLogTarget::File(path.clone()), 1).unwrap();
        for status in [200, 201, 202] {
            log.log(record(status));
        }
        assert_eq!(log.dropped(), 2);
        log.shutdown().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text.lines().count(), 1);
    }

    #[tokio::test]
    async fn off_logs_nothing() {
        let log = AccessLog::start(AccessLogTarget::Off).unwrap();
        assert!(!log.is_enabled());
        log.log(record(200));
        log.shutdown().await;
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn unopenable_file_is_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _guard = rt.enter();
        let err = AccessLog::start(AccessLogTarget::File("/nonexistent-dir/x/access.log".into())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x/access.log"), "{err}");
    }
}
