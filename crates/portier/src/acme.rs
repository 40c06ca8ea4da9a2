//! The ACME controller: reads the certificate demand from each published snapshot, issues with
//! the engine when a Secret is missing, does not cover its names or is due for renewal, and
//! feeds the results back into the top of the pipeline as `Change`s (DESIGN.md rule 3):
//!
//! - HTTP-01 tokens go to the model store as `AcmeChallenge` objects of the `acme` provider;
//!   `present` resolves once a snapshot serving the token is live.
//! - Issued certificates are written as `kubernetes.io/tls` Secret manifests (mode 0600) under
//!   `STATE_DIR/secrets/NAMESPACE/NAME.yaml`, which the `state` files provider loads like any
//!   Secret, so a restart serves them and orders nothing new.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures_util::future::BoxFuture;
use portier_acme::{
    renewal_time, CertificateStatus, ConditionStatus, ConditionType, Engine, FileStorage, Http01Responder, Issued,
    ResponderError, RotationPolicy, SecretRef, Timestamp,
};
use portier_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use portier_model::{AcmeChallenge, Change, Object, Origin, ProviderId, Resource};
use portier_provider_files::FileProvider;
use portier_snapshot::certificates::{CurrentCertificate, DemandedCertificate};
use portier_snapshot::SnapshotCell;
use portier_telemetry::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The model store's provider for HTTP-01 tokens.
pub const ACME: ProviderId = ProviderId("acme");
/// The model store's provider for issued certificates (`STATE_DIR/secrets`).
pub const STATE: ProviderId = ProviderId("state");

/// Changes sent back to the top of the pipeline, applied by the reloader in `serve.rs`.
pub type Inbox = mpsc::UnboundedSender<(ProviderId, Change)>;

/// How long `present` waits for a snapshot that serves a new token.
const PRESENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the demand is looked at without a new snapshot (backoff expiries, renewals).
const TICK: Duration = Duration::from_secs(5);
/// New orders per ACME account per hour. Let's Encrypt allows 300 new orders per account per
/// 3 hours; a sixth of that leaves room for other clients of the same account and stops a
/// configuration mistake (many names, each failing) from burning the account's limit.
const ORDERS_PER_ACCOUNT_PER_HOUR: usize = 50;

/// The ACME families of the process registry (`portier_acme_*`).
#[derive(Clone)]
pub struct AcmeMetrics {
    issuances: Family<ResultLabels, Counter>,
    durations: Histogram,
    expiry: Family<SecretLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SecretLabels {
    secret: String,
}

/// Runs issuance for the demand of the live snapshot.
pub struct Controller {
    metrics: AcmeMetrics,
    engine: Engine,
    cell: Arc<SnapshotCell>,
    inbox: Inbox,
    secrets_dir: PathBuf,
    /// Certificates issued by this process, until a snapshot shows them.
    issued: Arc<Mutex<HashMap<SecretRef, CurrentCertificate>>>,
    in_flight: Arc<Mutex<HashSet<SecretRef>>>,
    /// Start times of the orders of the last hour, per account (directory, key Secret).
    orders: Mutex<HashMap<(String, SecretRef), Vec<std::time::Instant>>>,
}

/// Serves HTTP-01 tokens through the pipeline: a token is live once a published snapshot has it.
struct Responder {
    tokens: Mutex<BTreeMap<String, String>>,
    inbox: Inbox,
    cell: Arc<SnapshotCell>,
}

// === impl AcmeMetrics ===

impl AcmeMetrics {
    /// Registers the families; call before the registry is shared.
    pub fn register(metrics: &mut Metrics) -> Self {
        let m = Self {
            issuances: Family::default(),
            durations: Histogram::new([1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
            expiry: Family::default(),
        };
        metrics.register(
            "acme_certificate_issuances",
            "ACME issuances and renewals, by result (success or failure)",
            m.issuances.clone(),
        );
        metrics.register(
            "acme_order_duration_seconds",
            "Time from ordering a certificate to having it or giving up, challenges included",
            m.durations.clone(),
        );
        metrics.register(
            "acme_certificate_expiry_timestamp_seconds",
            "Unix time at which the certificate of each demanded Secret expires",
            m.expiry.clone(),
        );
        m
    }
}

// === impl Controller ===

impl Controller {
    /// Builds the engine with account keys under `state_dir/accounts`.
    pub fn new(state_dir: &Path, cell: Arc<SnapshotCell>, inbox: Inbox, metrics: AcmeMetrics) -> Self {
        let responder = Arc::new(Responder {
            tokens: Mutex::new(BTreeMap::new()),
            inbox: inbox.clone(),
            cell: cell.clone(),
        });
        let engine = Engine::builder(Arc::new(FileStorage::new(state_dir)), responder)
            .max_concurrent_orders(3)
            .build();
        Self {
            metrics,
            engine,
            cell,
            inbox,
            secrets_dir: secrets_dir(state_dir),
            issued: Arc::default(),
            in_flight: Arc::default(),
            orders: Mutex::default(),
        }
    }

    pub fn engine(&self) -> Engine {
        self.engine.clone()
    }

    /// Looks at the demand after every publish and every [`TICK`], until `shutdown`.
    pub async fn run(self, mut published: watch::Receiver<u64>, shutdown: CancellationToken) {
        loop {
            self.reconcile();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = published.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    fn reconcile(&self) {
        let snap = self.cell.load();
        let demand = snap.certificates();
        let now = SystemTime::now();
        for dc in &demand.certificates {
            let secret = &dc.request.secret;
            if let Some(c) = &dc.current {
                let labels = SecretLabels {
                    secret: secret.to_string(),
                };
                self.metrics.expiry.get_or_create(&labels).set(c.not_after);
            }
            let Some(issuer) = demand.issuer(&dc.request.issuer) else {
                continue; // compile reported it
            };
            if lock(&self.in_flight).contains(secret) {
                continue;
            }
            let cached = lock(&self.issued).get(secret).cloned();
            if !due(dc, cached.as_ref(), now) {
                continue;
            }
            if let Some(next) = self.engine.status(secret).and_then(|s| s.next_attempt) {
                if UNIX_EPOCH + Duration::from_secs(next.0) > now {
                    continue; // backing off after a failure (or the CA's Retry-After)
                }
            }
            if !self.admit(&issuer.acme.server, &issuer.acme.private_key_secret_ref) {
                tracing::warn!(certificate = %secret, issuer = %issuer.reference, limit = ORDERS_PER_ACCOUNT_PER_HOUR, "order deferred: the account's hourly order limit is reached");
                continue;
            }
            lock(&self.in_flight).insert(secret.clone());
            let (engine, issuer, request) = (self.engine.clone(), issuer.clone(), dc.request.clone());
            let metrics = self.metrics.clone();
            let (in_flight, issued, inbox, dir) = (
                self.in_flight.clone(),
                self.issued.clone(),
                self.inbox.clone(),
                self.secrets_dir.clone(),
            );
            tracing::info!(certificate = %request.secret, issuer = %issuer.reference, "ordering certificate");
            tokio::spawn(async move {
                // The engine logs the outcome and records it in the status (with its backoff).
                let clock = std::time::Instant::now();
                // rotationPolicy Never reuses the key of the certificate this process stored.
                let current_key = (request.private_key.rotation_policy == RotationPolicy::Never)
                    .then(|| stored_key(&dir, &request.secret))
                    .flatten();
                let result = engine.issue(&issuer, &request, current_key.as_deref()).await;
                metrics.durations.observe(clock.elapsed().as_secs_f64());
                let result_label = if result.is_ok() { "success" } else { "failure" };
                metrics
                    .issuances
                    .get_or_create(&ResultLabels { result: result_label })
                    .inc();
                if let Ok(cert) = result {
                    match store(&dir, &cert) {
                        Ok(()) => {
                            let names = request.identifiers().unwrap_or_else(|_| request.dns_names.clone());
                            lock(&issued).insert(cert.secret.clone(), current_of(&cert, &names));
                            reload_state(&dir, &inbox);
                        }
                        Err(e) => {
                            tracing::error!(certificate = %cert.secret, error = %format!("{e:#}"), "cannot store the issued certificate");
                        }
                    }
                }
                lock(&in_flight).remove(&request.secret);
            });
        }
    }

    /// Counts one order against the account's hourly limit; false when the limit is reached.
    fn admit(&self, server: &str, key: &SecretRef) -> bool {
        let mut orders = lock(&self.orders);
        let recent = orders.entry((server.to_owned(), key.clone())).or_default();
        admit(recent, std::time::Instant::now(), ORDERS_PER_ACCOUNT_PER_HOUR)
    }
}

// === impl Responder ===

impl Responder {
    fn send(&self) {
        let resources = lock(&self.tokens)
            .iter()
            .map(|(token, key_authorization)| {
                Arc::new(Resource::new(
                    Object::AcmeChallenge(AcmeChallenge {
                        metadata: ObjectMeta {
                            name: Some(token.clone()),
                            ..ObjectMeta::default()
                        },
                        token: token.clone(),
                        key_authorization: key_authorization.clone(),
                    }),
                    Origin::none(),
                ))
            })
            .collect();
        let _ = self.inbox.send((
            ACME,
            Change::Resync {
                resources,
                diagnostics: Vec::new(),
            },
        ));
    }
}

impl Http01Responder for Responder {
    fn present<'a>(&'a self, token: &'a str, key_authorization: &'a str) -> BoxFuture<'a, Result<(), ResponderError>> {
        Box::pin(async move {
            lock(&self.tokens).insert(token.to_owned(), key_authorization.to_owned());
            self.send();
            let started = std::time::Instant::now();
            while self.cell.load().http01_key_authorization(token) != Some(key_authorization) {
                if started.elapsed() > PRESENT_TIMEOUT {
                    return Err(ResponderError(format!(
                        "no snapshot serving the token was published within {PRESENT_TIMEOUT:?}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(())
        })
    }

    fn cleanup<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<(), ResponderError>> {
        Box::pin(async move {
            lock(&self.tokens).remove(token);
            self.send();
            Ok(())
        })
    }
}

/// Sliding one-hour window: records `now` and returns true when fewer than `limit` orders
/// started in the hour before it.
fn admit(recent: &mut Vec<std::time::Instant>, now: std::time::Instant, limit: usize) -> bool {
    recent.retain(|t| now.duration_since(*t) < Duration::from_secs(3600));
    if recent.len() >= limit {
        return false;
    }
    recent.push(now);
    true
}

/// `STATE_DIR/secrets`: issued certificates as Secret manifests.
pub fn secrets_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("secrets")
}

/// Scans the issued Secrets; `None` when the directory does not exist yet.
pub fn scan_state(dir: &Path) -> Option<Change> {
    if !dir.is_dir() {
        return None;
    }
    match FileProvider::new(dir).scan() {
        Ok(change) => Some(change),
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot read issued certificates");
            None
        }
    }
}

fn reload_state(dir: &Path, inbox: &Inbox) {
    if let Some(change) = scan_state(dir) {
        let _ = inbox.send((STATE, change));
    }
}

/// Whether a demanded certificate must be ordered now: no certificate, one that does not cover
/// every name, or one past its renewal time (renewBefore, else 2/3 of its lifetime).
fn due(dc: &DemandedCertificate, cached: Option<&CurrentCertificate>, now: SystemTime) -> bool {
    let current = match (dc.current.as_ref(), cached) {
        (Some(a), Some(b)) if b.not_after > a.not_after => b,
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => return true,
    };
    let names = dc
        .request
        .identifiers()
        .unwrap_or_else(|_| dc.request.dns_names.clone());
    if !names.iter().all(|n| current.dns_names.contains(n)) {
        return true;
    }
    let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    now >= renewal_time(at(current.not_before), at(current.not_after), dc.request.renew_before)
}

fn current_of(cert: &Issued, names: &[String]) -> CurrentCertificate {
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    };
    CurrentCertificate {
        dns_names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        not_before: secs(cert.not_before),
        not_after: secs(cert.not_after),
    }
}

/// The `tls.key` of a Secret manifest [`store`] wrote, if any.
fn stored_key(dir: &Path, secret: &SecretRef) -> Option<String> {
    let text = std::fs::read_to_string(secret_path(dir, secret)?).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["stringData"]["tls.key"].as_str().map(str::to_owned)
}

/// Writes `dir/NAMESPACE/NAME.yaml` (JSON is YAML) with mode 0600, atomically.
fn store(dir: &Path, cert: &Issued) -> anyhow::Result<()> {
    let ns = cert.secret.namespace.as_deref().unwrap_or("default");
    let path = secret_path(dir, &cert.secret)
        .with_context(|| format!("Secret name {} cannot be a file name: use DNS-1123 names", cert.secret))?;
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": cert.secret.name,
            "namespace": ns,
            "annotations": { "portier.dev/acme-order": cert.order_url },
        },
        "stringData": { "tls.crt": cert.chain_pem, "tls.key": cert.key_pem },
    });
    let dir = dir.join(ns);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // A dot file is skipped by the files provider, so a half-written file is never read.
    let tmp = dir.join(format!(".{}.yaml.tmp", cert.secret.name));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(&manifest)?.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    tracing::info!(certificate = %cert.secret, path = %path.display(), "certificate stored");
    Ok(())
}

/// `dir/NAMESPACE/NAME.yaml`; `None` for a name that could leave the directory.
fn secret_path(dir: &Path, secret: &SecretRef) -> Option<PathBuf> {
    let ns = secret.namespace.as_deref().unwrap_or("default");
    let safe = |s: &str| {
        !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
    };
    (safe(ns) && safe(&secret.name)).then(|| dir.join(ns).join(format!("{}.yaml", secret.name)))
}

/// The admin views of the engine's statuses: `certificates`, `orders`, `challenges`. A demanded
/// certificate this process has not ordered (served from `--state-dir` after a restart) is listed
/// from the Secret it finds, with no attempts.
pub fn admin_view(engine: &Engine, cell: &SnapshotCell, view: &str) -> Option<serde_json::Value> {
    let mut statuses = engine.statuses();
    let snap = cell.load();
    for dc in &snap.certificates().certificates {
        if !statuses.iter().any(|s| s.secret == dc.request.secret) {
            statuses.push(status_from_secret(dc, SystemTime::now()));
        }
    }
    statuses.sort_by(|a, b| a.secret.cmp(&b.secret));
    let latest = |s: &CertificateStatus| s.history.last().cloned();
    Some(match view {
        "certificates" => serde_json::to_value(&statuses).ok()?,
        "orders" => statuses
            .iter()
            .filter_map(|s| {
                let a = latest(s)?;
                let o = a.order?;
                Some(serde_json::json!({ "certificate": s.secret.to_string(), "url": o.url, "state": o.state, "error": o.error }))
            })
            .collect(),
        "challenges" => statuses
            .iter()
            .flat_map(|s| {
                let secret = s.secret.to_string();
                latest(s)
                    .map(|a| a.challenges)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |c| {
                        let mut v = serde_json::to_value(&c).unwrap_or_default();
                        v["certificate"] = serde_json::Value::String(secret.clone());
                        v
                    })
            })
            .collect(),
        _ => return None,
    })
}

/// The status of a demanded certificate from what its Secret holds, for one never ordered here.
fn status_from_secret(dc: &DemandedCertificate, now: SystemTime) -> CertificateStatus {
    let r = &dc.request;
    let names = r.identifiers().unwrap_or_else(|_| r.dns_names.clone());
    let mut s = CertificateStatus::new(r.secret.clone(), r.issuer.clone(), names);
    let (ready, reason, message) = match &dc.current {
        None => (false, "DoesNotExist", format!("Secret {} does not exist yet", r.secret)),
        Some(c) => {
            let ts = |secs: i64| Timestamp(u64::try_from(secs).unwrap_or(0));
            s.not_before = Some(ts(c.not_before));
            s.not_after = Some(ts(c.not_after));
            let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
            s.renewal_time = Some(renewal_time(at(c.not_before), at(c.not_after), r.renew_before).into());
            if at(c.not_after) <= now {
                (false, "Expired", "the certificate in the Secret has expired".to_owned())
            } else if !s.dns_names.iter().all(|n| c.dns_names.contains(n)) {
                (
                    false,
                    "DoesNotCover",
                    format!("the certificate covers {}", c.dns_names.join(", ")),
                )
            } else {
                (
                    true,
                    "Ready",
                    "certificate is up to date and has not expired".to_owned(),
                )
            }
        }
    };
    let status = if ready {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    s.set_condition(ConditionType::Ready, status, reason, message);
    s
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portier_acme::{CertificateRequest, IssuerKind, IssuerRef, PrivateKeySpec};

    #[test]
    fn orders_per_account_are_limited_per_hour() {
        let t0 = std::time::Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut recent = Vec::new();
        // (seconds after t0, admitted) with a limit of 2 per hour
        let cases = [
            (0, true),
            (10, true),
            (20, false),
            (3599, false),
            (3600, true),
            (3610, true),
            (3620, false),
        ];
        for (s, want) in cases {
            assert_eq!(admit(&mut recent, at(s), 2), want, "order at +{s}s");
        }
    }

    #[test]
    fn due_when_missing_uncovered_or_past_renewal() {
        let t = |s: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0));
        let cur = |names: &[&str], nb: i64, na: i64| CurrentCertificate {
            dns_names: names.iter().map(|n| (*n).to_owned()).collect(),
            not_before: nb,
            not_after: na,
        };
        let dc = |current: Option<CurrentCertificate>, renew_before: Option<u64>| DemandedCertificate {
            request: CertificateRequest {
                secret: SecretRef::new(Some("default"), "app-tls"),
                issuer: IssuerRef {
                    kind: IssuerKind::ClusterIssuer,
                    namespace: None,
                    name: "le".into(),
                },
                dns_names: vec!["a.example".into(), "b.example".into()],
                common_name: None,
                duration: None,
                renew_before: renew_before.map(Duration::from_secs),
                private_key: PrivateKeySpec::default(),
                labels: BTreeMap::new(),
            },
            current,
        };
        // (case, demanded, cached, now, want)
        let cases = [
            ("no certificate", dc(None, None), None, 100, true),
            (
                "covers, early",
                dc(Some(cur(&["a.example", "b.example"], 0, 900)), None),
                None,
                100,
                false,
            ),
            (
                "covers, past 2/3",
                dc(Some(cur(&["a.example", "b.example"], 0, 900)), None),
                None,
                600,
                true,
            ),
            (
                "renewBefore",
                dc(Some(cur(&["a.example", "b.example"], 0, 900)), Some(100)),
                None,
                799,
                false,
            ),
            (
                "missing a name",
                dc(Some(cur(&["a.example"], 0, 900)), None),
                None,
                100,
                true,
            ),
            (
                "just issued",
                dc(None, None),
                Some(cur(&["a.example", "b.example"], 0, 900)),
                100,
                false,
            ),
        ];
        for (name, d, cached, now, want) in cases {
            assert_eq!(due(&d, cached.as_ref(), t(now)), want, "{name}");
        }
    }
}
