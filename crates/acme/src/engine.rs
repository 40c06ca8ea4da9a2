//! The engine: account → order → challenges → finalize → certificate, one issuance at a time
//! per [`Engine::issue`] call, at most `max_concurrent_orders` at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier, Key, NewAccount, NewOrder, RetryPolicy,
};
use rustls_pki_types::PrivateKeyDer;
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info, warn};

use crate::dns01::{challenge_record, DnsError, Rfc2136Client};
use crate::error::{challenge_cause, classify_problem, AcmeError, ProblemKind};
use crate::http01::Http01Responder;
use crate::issuer::{select_solver, CertificateRequest, Issuer, SecretRef, SolverKind};
use crate::keys::{certificate_key, csr_der, leaf_validity};
use crate::schedule::{renewal_time, Backoff};
use crate::status::{
    Attempt, AttemptOutcome, CertificateStatus, ChallengeKind, ChallengeState, ChallengeStatus, ConditionStatus,
    ConditionType, LikelyCause, OrderState, OrderStatus, Timestamp,
};
use crate::storage::Storage;
use crate::transport::account_builder;
use portier_snapshot::account_key::account_key_pkcs8;

/// Issues certificates. Cheap to clone; clones share accounts, statuses and the order limit.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Configures an [`Engine`].
pub struct EngineBuilder {
    storage: Arc<dyn Storage>,
    responder: Arc<dyn Http01Responder>,
    max_concurrent_orders: usize,
    backoff: Backoff,
    events: Option<mpsc::Sender<AcmeEvent>>,
    poll_timeout: Duration,
    orders_per_hour: usize,
}

/// New orders per ACME account per hour, by default. Let's Encrypt allows 300 new orders per
/// account per 3 hours; a sixth of that leaves room for other clients of the same account and
/// stops a configuration mistake (many names, each failing) from burning the account's limit.
pub const ORDERS_PER_ACCOUNT_PER_HOUR: usize = 50;

/// A certificate the CA issued, ready to be stored as a `kubernetes.io/tls` Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub secret: SecretRef,
    /// Leaf first, then the intermediates, as the CA sent them (`tls.crt`).
    pub chain_pem: String,
    /// PKCS#8 private key (`tls.key`). Never logged.
    pub key_pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub renewal_time: SystemTime,
    pub order_url: String,
}

/// What the engine tells the wiring. The wiring turns `Issued` into a Secret `Change` and
/// `Status` into the admin views; neither blocks issuance when the channel is full.
#[derive(Debug, Clone)]
pub enum AcmeEvent {
    /// A certificate was issued for `Issued::secret`.
    Issued(Arc<Issued>),
    /// A certificate's status changed (a condition, an attempt, the next retry time).
    Status(Box<CertificateStatus>),
}

struct Inner {
    storage: Arc<dyn Storage>,
    responder: Arc<dyn Http01Responder>,
    orders: Semaphore,
    accounts: tokio::sync::Mutex<HashMap<AccountKey, Account>>,
    statuses: Mutex<BTreeMap<SecretRef, CertificateStatus>>,
    backoff: Backoff,
    events: Option<mpsc::Sender<AcmeEvent>>,
    poll_timeout: Duration,
    orders_per_hour: usize,
    /// Start times of the orders of the last hour, per account (directory, key Secret).
    recent_orders: Mutex<HashMap<(String, SecretRef), Vec<Instant>>>,
}

/// An account cache entry: (directory, key Secret, the PEM key of the user's own Secret if the
/// configuration has one). A changed user key is another account.
type AccountKey = (String, SecretRef, Option<Vec<u8>>);

/// What one attempt got as far as, for the status history.
#[derive(Default)]
struct Trace {
    order: Option<OrderStatus>,
    challenges: Vec<ChallengeStatus>,
    /// When each of `challenges` was presented, same index; `None` when it never was.
    presented_at: Vec<Option<Instant>>,
}

/// A challenge response that must be removed after validation.
enum Presented {
    Http {
        token: String,
    },
    Dns {
        client: Rfc2136Client,
        record: String,
        value: String,
    },
}

// === impl EngineBuilder ===

impl EngineBuilder {
    /// At most this many orders run at once (default 3); further `issue` calls wait.
    pub fn max_concurrent_orders(mut self, n: usize) -> Self {
        self.max_concurrent_orders = n.max(1);
        self
    }

    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Where [`AcmeEvent`]s go. Events are dropped (with a warning) when the channel is full.
    pub fn events(mut self, tx: mpsc::Sender<AcmeEvent>) -> Self {
        self.events = Some(tx);
        self
    }

    /// How long to wait for the CA to validate an order or issue its certificate (default 90 s).
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// At most `n` new orders per ACME account in any hour (default
    /// [`ORDERS_PER_ACCOUNT_PER_HOUR`]); an issuance past it fails before anything is sent,
    /// with the time a slot frees up as its next attempt.
    pub fn orders_per_account_per_hour(mut self, n: usize) -> Self {
        self.orders_per_hour = n.max(1);
        self
    }

    pub fn build(self) -> Engine {
        let EngineBuilder {
            storage,
            responder,
            max_concurrent_orders,
            backoff,
            events,
            poll_timeout,
            orders_per_hour,
        } = self;
        Engine {
            inner: Arc::new(Inner {
                storage,
                responder,
                orders: Semaphore::new(max_concurrent_orders),
                accounts: tokio::sync::Mutex::new(HashMap::new()),
                statuses: Mutex::new(BTreeMap::new()),
                backoff,
                events,
                poll_timeout,
                orders_per_hour,
                recent_orders: Mutex::new(HashMap::new()),
            }),
        }
    }
}

// === impl Engine ===

impl Engine {
    pub fn builder(storage: Arc<dyn Storage>, responder: Arc<dyn Http01Responder>) -> EngineBuilder {
        EngineBuilder {
            storage,
            responder,
            max_concurrent_orders: 3,
            backoff: Backoff::default(),
            events: None,
            poll_timeout: Duration::from_secs(90),
            orders_per_hour: ORDERS_PER_ACCOUNT_PER_HOUR,
        }
    }

    /// Orders a certificate for `request` from `issuer` and waits until it is issued.
    ///
    /// `current_key_pem` is the key in the Secret today; it is reused only with
    /// `rotationPolicy: Never`. A `badNonce` is retried at once (up to 3 orders); any other
    /// failure ends the attempt, records it in the status (with the backoff or the CA's retry
    /// time in `next_attempt`) and is returned. Challenge responses are always cleaned up.
    pub async fn issue(
        &self,
        issuer: &Issuer,
        request: &CertificateRequest,
        current_key_pem: Option<&str>,
    ) -> Result<Issued, AcmeError> {
        let started = SystemTime::now();
        let clock = Instant::now();
        let names = request.identifiers().unwrap_or_else(|_| request.dns_names.clone());
        info!(
            certificate = %request.secret,
            issuer = %issuer.reference,
            dns_names = ?names,
            state = "Issuing",
            "certificate issuing: ordering from the CA"
        );
        self.update(request, &names, |s| {
            s.set_condition(
                ConditionType::Issuing,
                ConditionStatus::True,
                "Issuing",
                format!("ordering a certificate from {}", issuer.reference),
            );
        });

        let mut trace = Trace::default();
        let result = match request.identifiers() {
            Err(e) => Err(AcmeError::from(e)),
            Ok(names) => {
                let _permit = self.inner.orders.acquire().await;
                let mut tries = 0;
                loop {
                    trace = Trace::default();
                    match self.attempt(issuer, request, &names, current_key_pem, &mut trace).await {
                        // instant-acme already retries each request twice with the nonce of the
                        // badNonce answer (RFC 8555 §6.5); a third rejection in a row orders again.
                        Err(e) if e.is_bad_nonce() && tries < 2 => {
                            tries += 1;
                            warn!(certificate = %request.secret, error = %e, "badNonce three times in a row: ordering again");
                        }
                        r => break r,
                    }
                }
            }
        };

        let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let Trace { order, challenges, .. } = trace;
        let order_url = order.as_ref().map(|o| o.url.as_str()).unwrap_or("-");
        match &result {
            Ok(issued) => {
                info!(
                    certificate = %request.secret,
                    order = order_url,
                    state = "Ready",
                    duration_ms,
                    not_after = Timestamp::from(issued.not_after).0,
                    renewal_time = Timestamp::from(issued.renewal_time).0,
                    "certificate issued"
                );
                self.update(request, &names, |s| {
                    s.failed_attempts = 0;
                    s.next_attempt = None;
                    s.not_before = Some(issued.not_before.into());
                    s.not_after = Some(issued.not_after.into());
                    s.renewal_time = Some(issued.renewal_time.into());
                    s.set_condition(
                        ConditionType::Ready,
                        ConditionStatus::True,
                        "Ready",
                        "certificate is up to date and has not expired".into(),
                    );
                    s.set_condition(
                        ConditionType::Issuing,
                        ConditionStatus::False,
                        "Issued",
                        "certificate issued".into(),
                    );
                    s.push_attempt(Attempt {
                        started: started.into(),
                        duration_ms,
                        outcome: AttemptOutcome::Issued,
                        message: format!("issued by {}", issuer.reference),
                        order,
                        challenges,
                    });
                });
                self.emit(AcmeEvent::Issued(Arc::new(issued.clone())));
            }
            Err(err) => {
                let mut message = err.to_string();
                if let Some(cause) = err.likely_cause() {
                    if !message.contains(cause.explain()) {
                        message = format!("{message} (likely cause: {})", cause.explain());
                    }
                }
                warn!(
                    certificate = %request.secret,
                    order = order_url,
                    state = "Failed",
                    likely_cause = err.likely_cause().map(LikelyCause::as_str),
                    error = %message,
                    "certificate issuance failed"
                );
                let backoff = self.inner.backoff;
                self.update(request, &names, |s| {
                    s.failed_attempts = s.failed_attempts.saturating_add(1);
                    s.next_attempt = Some(
                        backoff
                            .next_attempt(SystemTime::now(), s.failed_attempts, err.retry_after())
                            .into(),
                    );
                    if s.condition(ConditionType::Ready)
                        .is_none_or(|c| c.status != ConditionStatus::True)
                    {
                        s.set_condition(ConditionType::Ready, ConditionStatus::False, "Failed", message.clone());
                    }
                    s.set_condition(
                        ConditionType::Issuing,
                        ConditionStatus::False,
                        "Failed",
                        message.clone(),
                    );
                    s.push_attempt(Attempt {
                        started: started.into(),
                        duration_ms,
                        outcome: AttemptOutcome::Failed,
                        message,
                        order,
                        challenges,
                    });
                });
            }
        }
        result
    }

    /// The status of the certificate for `secret`, if it was ever requested.
    pub fn status(&self, secret: &SecretRef) -> Option<CertificateStatus> {
        match self.inner.statuses.lock() {
            Ok(map) => map.get(secret).cloned(),
            Err(poisoned) => poisoned.into_inner().get(secret).cloned(),
        }
    }

    /// Every known certificate status, sorted by Secret.
    pub fn statuses(&self) -> Vec<CertificateStatus> {
        match self.inner.statuses.lock() {
            Ok(map) => map.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        }
    }

    /// Registers the issuer's ACME account, or loads it with its key: the key from the user's own
    /// Secret when compile found one (`AcmeIssuer::account_key`; never written to storage), else
    /// the stored key. Cached per (directory, key Secret, user key), so a changed Secret switches
    /// to the new key's account. When the CA does not know the key (`accountDoesNotExist`: a new
    /// user key, a test CA restarted) the same key is registered.
    pub async fn account(&self, issuer: &Issuer) -> Result<Account, AcmeError> {
        let acme = &issuer.acme;
        let secret = &acme.private_key_secret_ref;
        let user_key = acme.account_key.as_ref().map(|k| k.0.clone());
        let cache_key = (acme.server.clone(), secret.clone(), user_key.clone());
        let mut accounts = self.inner.accounts.lock().await;
        if let Some(account) = accounts.get(&cache_key) {
            return Ok(account.clone());
        }
        let config = |message: String| AcmeError::Config {
            issuer: issuer.reference.to_string(),
            message,
        };
        let (pem, from_user) = match user_key {
            Some(pem) => (Some(pem), true),
            None => (
                self.inner
                    .storage
                    .load_account_key(secret)
                    .await?
                    .map(String::into_bytes),
                false,
            ),
        };
        let account = match pem {
            Some(pem) => {
                let der = account_key_pkcs8(&pem).map_err(|why| {
                    config(if from_user {
                        format!("privateKeySecretRef {secret} (the Secret in the configuration) holds {why}; put an ECDSA P-256 key in it, or remove it to let portier register a new account")
                    } else {
                        format!("privateKeySecretRef {secret} (stored under --state-dir) holds {why}; delete the Secret to register a new account")
                    })
                })?;
                let key = || {
                    Key::from_pkcs8_der(der.clone_key())
                        .map(|k| (k, PrivateKeyDer::Pkcs8(der.clone_key())))
                        .map_err(|e| config(format!("privateKeySecretRef {secret}: {e}")))
                };
                let builder = account_builder(acme).map_err(config)?;
                match builder.from_key(key()?, acme.server.clone()).await {
                    Ok((account, _)) => {
                        if from_user {
                            info!(issuer = %issuer.reference, account = account.id(), account_key = %secret, "ACME account of the key in the configuration's Secret");
                        } else {
                            debug!(issuer = %issuer.reference, account = account.id(), "ACME account reused");
                        }
                        account
                    }
                    Err(instant_acme::Error::Api(p))
                        if p.r#type.as_deref().map(classify_problem) == Some(ProblemKind::AccountDoesNotExist) =>
                    {
                        info!(issuer = %issuer.reference, from_configuration = from_user, "CA does not know the account key; registering it");
                        let builder = account_builder(acme).map_err(config)?;
                        let (account, _) = builder
                            .create_from_key(key()?, acme.server.clone())
                            .await
                            .map_err(|e| AcmeError::acme("newAccount", e))?;
                        if let Some(email) = &acme.email {
                            let contact = format!("mailto:{email}");
                            if let Err(e) = account.update_contacts(&[contact.as_str()]).await {
                                warn!(issuer = %issuer.reference, error = %e, "cannot set the account's contact email");
                            }
                        }
                        account
                    }
                    Err(e) => return Err(AcmeError::acme("newAccount (existing key)", e)),
                }
            }
            None => {
                let contact = acme.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let eab = acme
                    .external_account_binding
                    .as_ref()
                    .map(|b| ExternalAccountKey::new(b.key_id.clone(), &b.key.0));
                let builder = account_builder(acme).map_err(config)?;
                let (account, credentials) = builder
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        acme.server.clone(),
                        eab.as_ref(),
                    )
                    .await
                    .map_err(|e| AcmeError::acme("newAccount", e))?;
                let pem = rcgen::KeyPair::try_from(credentials.private_key())
                    .map_err(|e| AcmeError::Key(format!("cannot encode the new account key: {e}")))?
                    .serialize_pem();
                self.inner.storage.store_account_key(secret, &pem).await?;
                info!(issuer = %issuer.reference, account = account.id(), "ACME account registered");
                account
            }
        };
        // A Secret whose key changed leaves its old account behind.
        accounts.retain(|(server, s, _), _| !(server == &acme.server && s == secret));
        accounts.insert(cache_key, account.clone());
        Ok(account)
    }

    async fn attempt(
        &self,
        issuer: &Issuer,
        request: &CertificateRequest,
        names: &[String],
        current_key_pem: Option<&str>,
        trace: &mut Trace,
    ) -> Result<Issued, AcmeError> {
        // Every name needs a solver before anything is ordered: a failed order costs the
        // account rate limit, a configuration error costs nothing.
        for name in names {
            if select_solver(&issuer.acme.solvers, name, &request.labels).is_none() {
                return Err(AcmeError::NoSolver {
                    issuer: issuer.reference.to_string(),
                    name: name.clone(),
                });
            }
        }
        self.admit(issuer)?;
        let account = self.account(issuer).await?;
        // A wildcard is ordered as `*.parent` (RFC 8555 §7.1.3); the CA offers it DNS-01 only.
        let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| AcmeError::acme("newOrder", e))?;
        let state = order_state(order.state().status);
        trace.order = Some(OrderStatus {
            url: order.url().to_owned(),
            state,
            error: None,
        });
        info!(certificate = %request.secret, order = order.url(), state = state.as_str(), "order created");

        let mut presented = Vec::new();
        let solved = self.solve(&mut order, issuer, request, trace, &mut presented).await;
        for p in presented {
            self.cleanup(p).await;
        }
        solved?;

        let key = certificate_key(&request.private_key, current_key_pem)?;
        let csr = csr_der(names, request.common_name.as_deref(), &key)?;
        order
            .finalize_csr(&csr)
            .await
            .map_err(|e| AcmeError::acme("finalize", e))?;
        let chain_pem = order
            .poll_certificate(&self.retry_policy())
            .await
            .map_err(|e| AcmeError::acme("certificate download", e))?;
        if let Some(o) = trace.order.as_mut() {
            o.state = OrderState::Valid;
        }
        info!(certificate = %request.secret, order = order.url(), state = OrderState::Valid.as_str(), "order valid: certificate downloaded");
        let (not_before, not_after) = leaf_validity(&chain_pem)?;
        Ok(Issued {
            secret: request.secret.clone(),
            chain_pem,
            key_pem: key.serialize_pem(),
            not_before,
            not_after,
            renewal_time: renewal_time(not_before, not_after, request.renew_before),
            order_url: order.url().to_owned(),
        })
    }

    /// Presents every pending authorization's challenge, tells the CA, waits for the order to
    /// become ready, and on failure reads each challenge's error back from the CA.
    async fn solve(
        &self,
        order: &mut instant_acme::Order,
        issuer: &Issuer,
        request: &CertificateRequest,
        trace: &mut Trace,
        presented: &mut Vec<Presented>,
    ) -> Result<(), AcmeError> {
        let order_url = order.url().to_owned();
        let order_url = order_url.as_str();
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.map_err(|e| AcmeError::acme("authorization", e))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => {
                    // RFC 8555 §7.1.4: the CA may reuse a valid authorization of this account.
                    info!(
                        certificate = %request.secret,
                        order = order_url,
                        dns_name = %authz.identifier(),
                        state = "valid",
                        "authorization already valid: no challenge needed"
                    );
                    continue;
                }
                other => {
                    return Err(AcmeError::Config {
                        issuer: issuer.reference.to_string(),
                        message: format!("authorization for {} is {other:?}", authz.identifier()),
                    })
                }
            }
            let name = authz.identifier().to_string();
            let no_solver = || AcmeError::NoSolver {
                issuer: issuer.reference.to_string(),
                name: name.clone(),
            };
            let solver = select_solver(&issuer.acme.solvers, &name, &request.labels).ok_or_else(no_solver)?;
            let (kind, ty) = match solver.kind {
                SolverKind::Http01 { .. } => (ChallengeKind::Http01, ChallengeType::Http01),
                SolverKind::Dns01 { .. } => (ChallengeKind::Dns01, ChallengeType::Dns01),
            };
            let mut challenge = authz.challenge(ty).ok_or_else(no_solver)?;
            let key_auth = challenge.key_authorization();
            let mut status = ChallengeStatus {
                dns_name: name.clone(),
                kind,
                token: None,
                record: None,
                state: ChallengeState::Presented,
                error: None,
                likely_cause: None,
                explanation: None,
                duration_ms: None,
            };
            match &solver.kind {
                SolverKind::Http01 { .. } => {
                    let token = challenge.token.clone();
                    status.token = Some(token.clone());
                    let shown = self.inner.responder.present(&token, key_auth.as_str()).await;
                    presented.push(Presented::Http { token });
                    if let Err(source) = shown {
                        status.state = ChallengeState::Errored;
                        status.error = Some(source.to_string());
                        log_challenge(request, order_url, &status);
                        trace.push(status, None);
                        return Err(AcmeError::Responder { name, source });
                    }
                }
                SolverKind::Dns01 { rfc2136 } => {
                    let record = challenge_record(&name);
                    status.record = Some(record.clone());
                    let dns_err = |source: DnsError| AcmeError::Dns {
                        name: name.clone(),
                        source: Box::new(source),
                    };
                    let client = Rfc2136Client::new(rfc2136).map_err(dns_err)?;
                    let value = key_auth.dns_value();
                    let written = client.present(&record, &value).await;
                    if let Err(e) = written {
                        status.state = ChallengeState::Errored;
                        let err = dns_err(e);
                        if let Some(cause) = err.likely_cause() {
                            status.likely_cause = Some(cause);
                            status.explanation = Some(cause.explain().to_owned());
                        }
                        status.error = Some(err.to_string());
                        log_challenge(request, order_url, &status);
                        trace.push(status, None);
                        return Err(err);
                    }
                    presented.push(Presented::Dns { client, record, value });
                }
            }
            log_challenge(request, order_url, &status);
            trace.push(status, Some(Instant::now()));
            challenge
                .set_ready()
                .await
                .map_err(|e| AcmeError::acme("challenge", e))?;
        }

        // A failed validation ends the order `invalid`; instant-acme returns the order's
        // problem as Err(Api). The per-challenge problems are read back below.
        let (state, order_problem) = match order.poll_ready(&self.retry_policy()).await {
            Ok(status) => (order_state(status), None),
            Err(instant_acme::Error::Api(p)) => (OrderState::Invalid, Some(p)),
            Err(e) => return Err(AcmeError::acme("order", e)),
        };
        let order_error = order_problem
            .as_ref()
            .or(order.state().error.as_ref())
            .map(problem_text);
        if let Some(o) = trace.order.as_mut() {
            o.state = state;
            o.error = order_error.clone();
        }
        match &order_error {
            None => {
                info!(certificate = %request.secret, order = order_url, state = state.as_str(), "order state changed")
            }
            Some(e) => {
                warn!(certificate = %request.secret, order = order_url, state = state.as_str(), error = %e, "order state changed")
            }
        }
        trace.stop_clocks();
        if state == OrderState::Ready {
            for c in &mut trace.challenges {
                c.state = ChallengeState::Valid;
                log_challenge(request, order_url, c);
            }
            return Ok(());
        }

        // Read each challenge's outcome and the CA's error from its authorization.
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let Ok(authz) = authz else { continue };
            let name = authz.identifier().to_string();
            for ch in &authz.challenges {
                let Some(status) = trace
                    .challenges
                    .iter_mut()
                    .find(|c| c.dns_name == name && challenge_type(c.kind) == ch.r#type)
                else {
                    continue;
                };
                status.state = match ch.status {
                    instant_acme::ChallengeStatus::Valid => ChallengeState::Valid,
                    instant_acme::ChallengeStatus::Invalid => ChallengeState::Invalid,
                    _ => status.state,
                };
                if let Some(problem) = &ch.error {
                    let kind = problem
                        .r#type
                        .as_deref()
                        .map(classify_problem)
                        .unwrap_or(ProblemKind::Other);
                    let detail = problem.detail.clone().unwrap_or_default();
                    status.error = Some(problem_text(problem));
                    status.likely_cause = challenge_cause(status.kind, kind, &detail);
                    status.explanation = status.likely_cause.map(|c| c.explain().to_owned());
                }
            }
        }
        for c in &trace.challenges {
            log_challenge(request, order_url, c);
        }
        let mut failed: Vec<ChallengeStatus> = trace
            .challenges
            .iter()
            .filter(|c| c.state != ChallengeState::Valid)
            .cloned()
            .collect();
        if failed.is_empty() || failed.iter().all(|c| c.error.is_none()) {
            // No challenge says why: the order's own problem is the best account we have.
            if let Some(p) = order_problem {
                return Err(AcmeError::acme("order", instant_acme::Error::Api(p)));
            }
            if let (Some(first), Some(err)) = (failed.first_mut(), order_error) {
                first.error = Some(err);
            }
        }
        Err(AcmeError::Validation { challenges: failed })
    }

    async fn cleanup(&self, presented: Presented) {
        match presented {
            Presented::Http { token } => {
                if let Err(e) = self.inner.responder.cleanup(&token).await {
                    warn!(error = %e, "cannot withdraw an HTTP-01 token");
                }
            }
            Presented::Dns { client, record, value } => {
                if let Err(e) = client.cleanup(&record, &value).await {
                    warn!(dns.record = %record, error = %e, "cannot remove a DNS-01 TXT record");
                }
            }
        }
    }

    /// Counts one order against the account's hourly limit, or says when the next one may start.
    fn admit(&self, issuer: &Issuer) -> Result<(), AcmeError> {
        let key = (issuer.acme.server.clone(), issuer.acme.private_key_secret_ref.clone());
        let mut all = match self.inner.recent_orders.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let recent = all.entry(key).or_default();
        match admit(recent, Instant::now(), self.inner.orders_per_hour) {
            None => Ok(()),
            Some(wait) => Err(AcmeError::OrderLimit {
                issuer: issuer.reference.to_string(),
                limit: self.inner.orders_per_hour,
                retry_after: SystemTime::now() + wait,
            }),
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(self.inner.poll_timeout)
    }

    fn update(&self, request: &CertificateRequest, names: &[String], f: impl FnOnce(&mut CertificateStatus)) {
        let snapshot = {
            let mut map = match self.inner.statuses.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            let status = map.entry(request.secret.clone()).or_insert_with(|| {
                CertificateStatus::new(request.secret.clone(), request.issuer.clone(), names.to_vec())
            });
            status.dns_names = names.to_vec();
            status.issuer = request.issuer.clone();
            f(status);
            status.clone()
        };
        self.emit(AcmeEvent::Status(Box::new(snapshot)));
    }

    fn emit(&self, event: AcmeEvent) {
        if let Some(tx) = &self.inner.events {
            if let Err(e) = tx.try_send(event) {
                warn!(error = %e, "ACME event dropped: the event channel is full or closed");
            }
        }
    }
}

// === impl Trace ===

impl Trace {
    fn push(&mut self, status: ChallengeStatus, presented_at: Option<Instant>) {
        self.challenges.push(status);
        self.presented_at.push(presented_at);
    }

    /// The CA has decided every presented challenge: record how long each took.
    fn stop_clocks(&mut self) {
        for (c, at) in self.challenges.iter_mut().zip(&self.presented_at) {
            if let Some(at) = at {
                c.duration_ms = Some(u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX));
            }
        }
    }
}

/// One log line per challenge state: info while it goes well, warn when it failed.
fn log_challenge(request: &CertificateRequest, order_url: &str, c: &ChallengeStatus) {
    let what = c.token.as_deref().or(c.record.as_deref()).unwrap_or("");
    match c.state {
        ChallengeState::Presented | ChallengeState::Valid => info!(
            certificate = %request.secret,
            order = order_url,
            dns_name = %c.dns_name,
            challenge = c.kind.as_str(),
            token_or_record = what,
            state = c.state.as_str(),
            duration_ms = c.duration_ms,
            "challenge state changed"
        ),
        ChallengeState::Invalid | ChallengeState::Errored => warn!(
            certificate = %request.secret,
            order = order_url,
            dns_name = %c.dns_name,
            challenge = c.kind.as_str(),
            token_or_record = what,
            state = c.state.as_str(),
            duration_ms = c.duration_ms,
            error = c.error.as_deref().unwrap_or("no error reported"),
            likely_cause = c.likely_cause.map(LikelyCause::as_str),
            "challenge state changed"
        ),
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("secret", &self.secret)
            .field("not_before", &Timestamp::from(self.not_before))
            .field("not_after", &Timestamp::from(self.not_after))
            .field("renewal_time", &Timestamp::from(self.renewal_time))
            .field("order_url", &self.order_url)
            .finish_non_exhaustive() // no key material in logs
    }
}

/// Sliding one-hour window: records `now` and returns `None` when fewer than `limit` orders
/// started in the hour before it, else how long until the oldest of them leaves the window.
fn admit(recent: &mut Vec<Instant>, now: Instant, limit: usize) -> Option<Duration> {
    const HOUR: Duration = Duration::from_secs(3600);
    recent.retain(|t| now.duration_since(*t) < HOUR);
    if recent.len() >= limit {
        let oldest = recent.iter().min().copied().unwrap_or(now);
        return Some(HOUR.saturating_sub(now.duration_since(oldest)));
    }
    recent.push(now);
    None
}

fn order_state(s: instant_acme::OrderStatus) -> OrderState {
    match s {
        instant_acme::OrderStatus::Pending => OrderState::Pending,
        instant_acme::OrderStatus::Ready => OrderState::Ready,
        instant_acme::OrderStatus::Processing => OrderState::Processing,
        instant_acme::OrderStatus::Valid => OrderState::Valid,
        instant_acme::OrderStatus::Invalid => OrderState::Invalid,
    }
}

fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::Dns01 => ChallengeType::Dns01,
    }
}

fn problem_text(p: &instant_acme::Problem) -> String {
    let ty = p.r#type.as_deref().unwrap_or("problem");
    let short = ty.rsplit(':').next().unwrap_or(ty);
    match &p.detail {
        Some(d) => format!("{short}: {d}"),
        None => short.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_per_account_are_limited_per_hour() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut recent = Vec::new();
        // (seconds after t0, wait) with a limit of 2 per hour
        let cases = [
            (0, None),
            (10, None),
            (20, Some(3580)),
            (3599, Some(1)),
            (3600, None),
            (3610, None),
            (3620, Some(3580)),
        ];
        for (s, want) in cases {
            assert_eq!(
                admit(&mut recent, at(s), 2),
                want.map(Duration::from_secs),
                "order at +{s}s"
            );
        }
    }
}
