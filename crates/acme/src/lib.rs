//! ACME for portier: certificate demand in, certificates and events out.
//!
//! The crate mirrors cert-manager's chain so users read the same words they know:
//! an [`Issuer`] (ClusterIssuer/Issuer `spec.acme`) and a [`CertificateRequest`] go in;
//! [`Engine::issue`] registers or reuses the ACME account, orders, solves every authorization
//! with the solver the selectors choose (HTTP-01 through the caller's [`Http01Responder`],
//! DNS-01 through RFC 2136 updates signed with TSIG), finalizes with a fresh key and returns an
//! [`Issued`] certificate. [`CertificateStatus`] → [`OrderStatus`] → [`ChallengeStatus`] record
//! what happened, with the CA's error and a [`LikelyCause`] in plain words.
//!
//! Dependency rule (ARCHITECTURE.md): this crate knows nothing of the model, compile, the data
//! plane or Kubernetes. Its input types live in `portier_snapshot::certificates`, where compile
//! writes the certificate demand. The binary's ACME controller (`crates/portier/src/acme.rs`)
//! turns issued certificates and HTTP-01 tokens into model `Change`s.

mod dns01;
mod engine;
mod error;
mod http01;
mod issuer;
mod keys;
mod schedule;
mod status;
mod storage;
mod transport;

pub use dns01::{DnsError, Rfc2136Client};
pub use engine::{AcmeEvent, Engine, EngineBuilder, Issued, ORDERS_PER_ACCOUNT_PER_HOUR};
pub use error::{classify_problem, AcmeError, ProblemKind};
pub use http01::{Http01Responder, ResponderError};
pub use issuer::{
    select_solver, AcmeIssuer, CertificateRequest, Dns01Rfc2136, ExternalAccountBinding, Http01Ingress, InvalidRequest,
    Issuer, IssuerKind, IssuerRef, KeyAlgorithm, PrivateKeySpec, RotationPolicy, SecretBytes, SecretRef, Solver,
    SolverKind, SolverSelector, TsigAlgorithm,
};
pub use schedule::{renewal_time, Backoff};
pub use status::{
    Attempt, AttemptOutcome, CertificateStatus, ChallengeKind, ChallengeState, ChallengeStatus, Condition,
    ConditionStatus, ConditionType, LikelyCause, OrderState, OrderStatus, Timestamp,
};
pub use storage::{
    secret_data, secret_manifest_path, write_secret, FileStorage, SecretManifest, Storage, StorageError,
    ACCOUNT_KEY_ANNOTATION, ACCOUNT_KEY_DATA_KEY, CLUSTER_RESOURCE_NAMESPACE,
};
