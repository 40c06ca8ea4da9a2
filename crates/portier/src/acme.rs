//! The ACME controller: reads the certificate demand from each published snapshot, issues with
//! the engine when a Secret is missing, does not cover its names or is due for renewal, and
//! feeds the results back into the top of the pipeline as `Change`s (DESIGN.md rule 3):
//!
//! - HTTP-01 tokens go to the model store as `AcmeChallenge` objects of the `acme` provider;
//!   `present` resolves once a snapshot serving the token is live.
//! - Issued certificates are written as `kubernetes.io/tls` Secret manifests (mode 0600) under
//!   `STATE_DIR/secrets/NAMESPACE/NAME.yaml`, which the `state` files provider loads like any
//!   Secret, so a restart serves them and orders nothing new. ACME account keys are `Opaque`
//!   Secrets in the same directory (`tls.key`, written by [`FileStorage`]), so a restart also
//!   reuses the account. The engine reads those from storage, not from the model: [`scan_state`]
//!   leaves them out, so that a Secret of the same name in the configuration directory (a user's
//!   own account key, which compile puts in the snapshot and the engine prefers) is never hidden
//!   by portier's copy, even though the `state` provider's objects win over the config
//!   directory's in the model store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures_util::future::BoxFuture;
use portier_acme::{
    renewal_time, secret_data, secret_manifest_path, write_secret, AcmeError, CertificateStatus, ChallengeState,
    ConditionStatus, ConditionType, Engine, FileStorage, Http01Responder, Issued, IssuerKind, IssuerRef,
    ResponderError, RotationPolicy, SecretManifest, SecretRef, Timestamp, ACCOUNT_KEY_ANNOTATION,
};
use portier_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use portier_model::{AcmeChallenge, Change, Object, Origin, ProviderId, Resource, Stored};
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
/// How often the demand is looked at at least, without a new snapshot; the controller wakes
/// earlier when a renewal time or the end of a backoff comes sooner.
const TICK: Duration = Duration::from_secs(5);

/// The ACME families of the process registry (`portier_acme_*`). Labels stay low-cardinality:
/// issuers, fixed words and challenge types; only the expiry gauge is per Secret.
#[derive(Clone)]
pub struct AcmeMetrics {
    issuances: Family<IssuanceLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    durations: Histogram,
    challenges: Family<ChallengeLabels, Histogram, fn() -> Histogram>,
    expiry: Family<SecretLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuanceLabels {
    /// `ClusterIssuer` or `Issuer`.
    issuer_kind: &'static str,
    /// The issuer's name; `NAMESPACE/NAME` for a namespaced Issuer.
    issuer_name: String,
    /// Why it was ordered: `issue` (no certificate yet), `reissue` (names changed), `renew`.
    reason: &'static str,
    /// `success` or `failure`.
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    issuer_kind: &'static str,
    issuer_name: String,
    /// The likely cause (`port80Unreachable`, `rateLimited`, ...) or `unknown`.
    cause: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChallengeLabels {
    /// `HTTP-01` or `DNS-01`.
    challenge_type: &'static str,
    /// `valid` or `invalid`.
    result: &'static str,
}

/// Why a demanded certificate is ordered now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// There is no certificate yet.
    Issue,
    /// The certificate does not cover every name any more.
    Reissue,
    /// The certificate passed its renewal time.
    Renew,
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
        fn challenge_histogram() -> Histogram {
            Histogram::new([0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
        }
        let m = Self {
            issuances: Family::default(),
            failures: Family::default(),
            durations: Histogram::new([1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
            challenges: Family::new_with_constructor(challenge_histogram),
            expiry: Family::default(),
        };
        metrics.register(
            "acme_certificate_issuances",
            "ACME certificate orders that ended, by issuer, reason (issue, reissue, renew) and result (success, failure)",
            m.issuances.clone(),
        );
        metrics.register(
            "acme_certificate_failures",
            "Failed ACME certificate orders, by issuer and likely cause (unknown when none is known)",
            m.failures.clone(),
        );
        metrics.register(
            "acme_order_duration_seconds",
            "Time from ordering a certificate to having it or giving up, challenges included",
            m.durations.clone(),
        );
        metrics.register(
            "acme_challenge_duration_seconds",
            "Time from presenting a challenge response to the CA's verdict, by challenge type and result",
            m.challenges.clone(),
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
    /// Builds the engine with account keys as Secrets under `state_dir/secrets`.
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
        }
    }

    pub fn engine(&self) -> Engine {
        self.engine.clone()
    }

    /// Looks at the demand after every publish and every [`TICK`], until `shutdown`.
    pub async fn run(self, mut published: watch::Receiver<u64>, shutdown: CancellationToken) {
        loop {
            let wake = self.reconcile();
            let now = SystemTime::now();
            // Renew on time: sleep until the earliest renewal or end of backoff, if sooner than
            // a tick (a second late at most: timestamps are whole seconds).
            let sleep = wake
                .map_or(TICK, |t| t.duration_since(now).unwrap_or(Duration::ZERO))
                .clamp(Duration::from_millis(100), TICK);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = published.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Starts an order for every demanded certificate that is due; returns the earliest time a
    /// certificate that is not due now becomes due (renewal time, end of a backoff).
    fn reconcile(&self) -> Option<SystemTime> {
        let snap = self.cell.load();
        let demand = snap.certificates();
        let now = SystemTime::now();
        let mut wake: Option<SystemTime> = None;
        let mut wake_at = |t: SystemTime| wake = Some(wake.map_or(t, |w| w.min(t)));
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
            let Some(why) = due(dc, cached.as_ref(), now) else {
                if let Some(t) = renewal_at(dc, cached.as_ref()) {
                    wake_at(t);
                }
                continue;
            };
            if let Some(next) = self.engine.status(secret).and_then(|s| s.next_attempt) {
                let next = next.to_system_time();
                if next > now {
                    wake_at(next);
                    continue; // backing off after a failure (the CA's Retry-After, the order limit)
                }
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
            let reason = match why {
                Due::Issue => "issue",
                Due::Reissue => "reissue",
                Due::Renew => "renew",
            };
            tracing::info!(certificate = %request.secret, issuer = %issuer.reference, reason, "certificate due: ordering");
            tokio::spawn(async move {
                // The engine logs the outcome and records it in the status (with its backoff).
                let clock = std::time::Instant::now();
                // rotationPolicy Never reuses the key of the certificate this process stored.
                let current_key = (request.private_key.rotation_policy == RotationPolicy::Never)
                    .then(|| stored_key(&dir, &request.secret))
                    .flatten();
                let result = engine.issue(&issuer, &request, current_key.as_deref()).await;
                metrics.durations.observe(clock.elapsed().as_secs_f64());
                metrics.observe(&issuer.reference, reason, result.as_ref().err());
                if let Some(attempt) = engine.status(&request.secret).and_then(|s| s.history.last().cloned()) {
                    metrics.observe_challenges(&attempt.challenges);
                }
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
        wake
    }
}

impl AcmeMetrics {
    /// Counts one finished order: the issuance counter, and the failure counter by likely cause.
    fn observe(&self, issuer: &IssuerRef, reason: &'static str, error: Option<&AcmeError>) {
        let (issuer_kind, issuer_name) = issuer_labels(issuer);
        self.issuances
            .get_or_create(&IssuanceLabels {
                issuer_kind,
                issuer_name: issuer_name.clone(),
                reason,
                result: if error.is_none() { "success" } else { "failure" },
            })
            .inc();
        if let Some(e) = error {
            let cause = e.likely_cause().map_or("unknown", |c| c.as_str());
            self.failures
                .get_or_create(&FailureLabels {
                    issuer_kind,
                    issuer_name,
                    cause,
                })
                .inc();
        }
    }

    /// Observes every challenge of an attempt the CA decided.
    fn observe_challenges(&self, challenges: &[portier_acme::ChallengeStatus]) {
        for c in challenges {
            let result = match c.state {
                ChallengeState::Valid => "valid",
                ChallengeState::Invalid => "invalid",
                ChallengeState::Presented | ChallengeState::Errored => continue,
            };
            if let Some(ms) = c.duration_ms {
                #[allow(clippy::cast_precision_loss)] // milliseconds fit an f64 exactly below 2^53
                let secs = ms as f64 / 1000.0;
                self.challenges
                    .get_or_create(&ChallengeLabels {
                        challenge_type: c.kind.as_str(),
                        result,
                    })
                    .observe(secs);
            }
        }
    }
}

fn issuer_labels(issuer: &IssuerRef) -> (&'static str, String) {
    match (issuer.kind, &issuer.namespace) {
        (IssuerKind::ClusterIssuer, _) => ("ClusterIssuer", issuer.name.clone()),
        (IssuerKind::Issuer, Some(ns)) => ("Issuer", format!("{ns}/{}", issuer.name)),
        (IssuerKind::Issuer, None) => ("Issuer", issuer.name.clone()),
    }
}

// === impl Responder ===

impl Responder {
    fn send(&self) {
        let resources = lock(&self.tokens)
            .iter()
            .map(|(token, key_authorization)| {
                Arc::new(Resource::new(
                    Object::AcmeChallenge(Box::new(AcmeChallenge {
                        metadata: ObjectMeta {
                            name: Some(token.clone()),
                            ..ObjectMeta::default()
                        },
                        token: token.clone(),
                        key_authorization: key_authorization.clone(),
                    })),
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

/// `STATE_DIR/secrets`: issued certificates as Secret manifests.
pub fn secrets_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("secrets")
}

/// Scans the issued Secrets; `None` when the directory does not exist yet.
///
/// The ACME account key Secrets portier wrote there are left out of the change: the engine reads
/// them from its storage, and in the model they would hide (the `state` provider wins over the
/// configuration directory) a user's own Secret of the same name, whose key must be used instead.
pub fn scan_state(dir: &Path) -> Option<Change> {
    if !dir.is_dir() {
        return None;
    }
    match FileProvider::new(dir).scan() {
        Ok(Change::Resync { resources, diagnostics }) => Some(Change::Resync {
            resources: resources.into_iter().filter(|r| !is_account_key(r)).collect(),
            diagnostics,
        }),
        Ok(change) => Some(change),
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot read issued certificates");
            None
        }
    }
}

/// An account key Secret [`FileStorage`] wrote (annotated `portier.dev/acme-account-key: "true"`).
fn is_account_key(r: &Resource) -> bool {
    matches!(r.object, Stored::Secret(_)) && r.annotation(ACCOUNT_KEY_ANNOTATION) == Some("true")
}

fn reload_state(dir: &Path, inbox: &Inbox) {
    if let Some(change) = scan_state(dir) {
        let _ = inbox.send((STATE, change));
    }
}

/// Whether a demanded certificate must be ordered now, and why: no certificate, one that does
/// not cover every name, or one past its renewal time (renewBefore, else 2/3 of its lifetime).
fn due(dc: &DemandedCertificate, cached: Option<&CurrentCertificate>, now: SystemTime) -> Option<Due> {
    let Some(current) = newest(dc, cached) else {
        return Some(Due::Issue);
    };
    let names = dc
        .request
        .identifiers()
        .unwrap_or_else(|_| dc.request.dns_names.clone());
    if !names.iter().all(|n| current.dns_names.contains(n)) {
        return Some(Due::Reissue);
    }
    renewal_at(dc, cached).is_some_and(|t| now >= t).then_some(Due::Renew)
}

/// The newer of the certificate in the Secret and the one this process just issued.
fn newest<'a>(dc: &'a DemandedCertificate, cached: Option<&'a CurrentCertificate>) -> Option<&'a CurrentCertificate> {
    match (dc.current.as_ref(), cached) {
        (Some(a), Some(b)) if b.not_after > a.not_after => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

/// When the current certificate is due for renewal (renewBefore, else 2/3 of its lifetime).
fn renewal_at(dc: &DemandedCertificate, cached: Option<&CurrentCertificate>) -> Option<SystemTime> {
    let current = newest(dc, cached)?;
    let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    Some(renewal_time(
        at(current.not_before),
        at(current.not_after),
        dc.request.renew_before,
    ))
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
    let ns = secret.namespace.as_deref().unwrap_or("default");
    let text = std::fs::read_to_string(secret_manifest_path(dir, ns, &secret.name)?).ok()?;
    secret_data(&text, "tls.key").ok()
}

/// Writes the `kubernetes.io/tls` Secret `dir/NAMESPACE/NAME.yaml` (JSON is YAML) with mode
/// 0600, atomically.
fn store(dir: &Path, cert: &Issued) -> anyhow::Result<()> {
    let manifest = SecretManifest {
        namespace: cert.secret.namespace.as_deref().unwrap_or("default"),
        name: &cert.secret.name,
        kind: "kubernetes.io/tls",
        annotations: BTreeMap::from([("portier.dev/acme-order", cert.order_url.as_str())]),
        string_data: BTreeMap::from([("tls.crt", cert.chain_pem.as_str()), ("tls.key", cert.key_pem.as_str())]),
    };
    let path = write_secret(dir, &manifest).with_context(|| {
        format!(
            "storing the certificate as Secret {} under {}",
            cert.secret,
            dir.display()
        )
    })?;
    tracing::info!(certificate = %cert.secret, path = %path.display(), "certificate stored");
    Ok(())
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
            ("no certificate", dc(None, None), None, 100, Some(Due::Issue)),
            (
                "covers, early",
                dc(Some(cur(&["a.example", "b.example"], 0, 900)), None),
                None,
                100,
                None,
            ),
            (
                "covers, past 2/3",
                dc(Some(cur(&["a.example", "b.example"], 0, 900)), None),
                None,
                600,
                Some(Due::Renew),
            ),
            (
                "renewBefore",
                dc(Some(cur(&["a.example", "b.example"], 0, 900)), Some(100)),
                None,
                799,
                None,
            ),
            (
                "renewBefore reached",
                dc(Some(cur(&["a.example", "b.example"], 0, 900)), Some(100)),
                None,
                800,
                Some(Due::Renew),
            ),
            (
                "missing a name",
                dc(Some(cur(&["a.example"], 0, 900)), None),
                None,
                100,
                Some(Due::Reissue),
            ),
            (
                "just issued",
                dc(None, None),
                Some(cur(&["a.example", "b.example"], 0, 900)),
                100,
                None,
            ),
        ];
        for (name, d, cached, now, want) in cases {
            assert_eq!(due(&d, cached.as_ref(), t(now)), want, "{name}");
        }
    }

    #[tokio::test]
    async fn portiers_own_account_keys_stay_out_of_the_model() {
        use portier_acme::Storage;

        let state = std::env::temp_dir().join(format!("portier-scan-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let dir = secrets_dir(&state);
        FileStorage::new(&state)
            .store_account_key(&SecretRef::new(None, "le-account-key"), "PEM")
            .await
            .expect("store the account key");
        let manifest = SecretManifest {
            namespace: "default",
            name: "app-tls",
            kind: "kubernetes.io/tls",
            annotations: BTreeMap::new(),
            string_data: BTreeMap::from([("tls.crt", "CRT"), ("tls.key", "KEY")]),
        };
        write_secret(&dir, &manifest).expect("store a certificate");
        let Some(Change::Resync { resources, .. }) = scan_state(&dir) else {
            panic!("a resync of the state directory");
        };
        let names: Vec<String> = resources.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(resources.len(), 1, "{names:?}");
        assert_eq!(resources[0].name(), "app-tls", "{names:?}");
        let _ = std::fs::remove_dir_all(&state);
    }
}
