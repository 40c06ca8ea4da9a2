//! cert-manager's `cert-manager.io/v1` ClusterIssuer, Issuer and Certificate, as far as portier
//! reads them, plus portier's internal HTTP-01 token object. Decoding is lenient (cert-manager
//! has many fields portier does not use); compile reports what it cannot act on.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

pub(crate) const API_VERSION: &str = "cert-manager.io/v1";

/// A ClusterIssuer or an Issuer: both have the same spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: IssuerSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSpec {
    pub acme: Option<AcmeSpec>,
    /// Any other issuer type (`ca`, `selfSigned`, `vault`, …): compile reports it.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcmeSpec {
    #[serde(default)]
    pub server: String,
    pub email: Option<String>,
    pub private_key_secret_ref: Option<SecretKeySelector>,
    /// Base64 of a PEM bundle, as in cert-manager.
    #[serde(rename = "caBundle")]
    pub ca_bundle: Option<String>,
    #[serde(default, rename = "skipTLSVerify")]
    pub skip_tls_verify: bool,
    pub external_account_binding: Option<EabSpec>,
    #[serde(default)]
    pub solvers: Vec<SolverSpec>,
}

/// `{name, key}`: a key of a Secret in the issuer's namespace.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    #[serde(default)]
    pub name: String,
    pub key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EabSpec {
    #[serde(rename = "keyID", default)]
    pub key_id: String,
    pub key_secret_ref: Option<SecretKeySelector>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SolverSpec {
    #[serde(default)]
    pub selector: Option<SelectorSpec>,
    pub http01: Option<Http01Spec>,
    pub dns01: Option<Dns01Spec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectorSpec {
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub dns_zones: Vec<String>,
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Http01Spec {
    pub ingress: Option<Http01IngressSpec>,
    /// `gatewayHTTPRoute` and anything else: reported as unsupported.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Http01IngressSpec {
    pub class: Option<String>,
    pub ingress_class_name: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns01Spec {
    pub rfc2136: Option<Rfc2136Spec>,
    /// `cloudflare`, `route53`, `webhook`, …: reported as unsupported.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rfc2136Spec {
    #[serde(default)]
    pub nameserver: String,
    #[serde(default)]
    pub tsig_key_name: String,
    pub tsig_algorithm: Option<String>,
    pub tsig_secret_secret_ref: Option<SecretKeySelector>,
}

/// `cert-manager.io/v1` Certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: CertificateSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    #[serde(default)]
    pub secret_name: String,
    #[serde(default)]
    pub dns_names: Vec<String>,
    pub common_name: Option<String>,
    /// Go duration, e.g. `2160h`.
    pub duration: Option<String>,
    pub renew_before: Option<String>,
    #[serde(default)]
    pub issuer_ref: IssuerRefSpec,
    pub private_key: Option<PrivateKeySpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRefSpec {
    #[serde(default)]
    pub name: String,
    pub kind: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKeySpec {
    pub algorithm: Option<String>,
    pub size: Option<u32>,
    pub rotation_policy: Option<String>,
}

/// An HTTP-01 token portier answers (`AcmeChallenge`, cluster-scoped, named after the token).
/// Only the ACME wiring creates these; they never come from files.
#[derive(Debug, Clone)]
pub struct AcmeChallenge {
    pub metadata: ObjectMeta,
    pub token: String,
    pub key_authorization: String,
}
