//! HTTP-01: the caller serves the key authorization; the engine only tells it what and when.

use futures_util::future::BoxFuture;

/// Serves HTTP-01 key authorizations at `/.well-known/acme-challenge/<token>` on port 80.
///
/// The wiring implements it by sending the token as a `Change` and resolving `present` once a
/// snapshot that serves it is live; the engine tells the CA to validate only after that, so
/// the CA never races the data plane.
pub trait Http01Responder: Send + Sync {
    /// Start answering `GET /.well-known/acme-challenge/{token}` (any Host, any port in the
    /// Host header) with `key_authorization` as the body. Resolve when it is being served.
    fn present<'a>(&'a self, token: &'a str, key_authorization: &'a str) -> BoxFuture<'a, Result<(), ResponderError>>;
    /// Stop answering for `token`. Called after validation, whether it passed or not.
    fn cleanup<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<(), ResponderError>>;
}

/// The responder could not serve (or stop serving) a token.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the challenge token: {0}")]
pub struct ResponderError(pub String);
