//! Responses the gateway generates itself when it cannot serve a request. Each carries
//! `x-portier-error: <kind>` and a short text body, so a user can tell them from upstream errors.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::body::ResponseBody;

/// Marks a response the gateway generated itself; the value is the [`ErrorKind`].
pub(crate) static X_PORTIER_ERROR: HeaderName = HeaderName::from_static("x-portier-error");

/// Why the gateway answered a request itself.
#[derive(Debug)]
pub(crate) struct GatewayError {
    pub(crate) kind: ErrorKind,
    /// One line for the response body and the log; never the endpoint address (that is in the
    /// access log) nor anything secret.
    pub(crate) message: Cow<'static, str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    BadRequest,
    /// Ambiguous or smuggling-prone message framing (CL+TE, duplicate Content-Length, bare CR/LF,
    /// obs-fold, a Transfer-Encoding other than `chunked`); the connection is closed after it.
    BadFraming,
    /// The request path cannot be normalized (see `portier_snapshot::normalize_path`).
    BadPath,
    /// The route's source ranges do not admit the client address.
    Forbidden,
    /// An HTTPS request whose host is served by another certificate than the one its SNI chose.
    Misdirected,
    /// The request body stalled for longer than `client-body-timeout`.
    BodyTimeout,
    /// The request body is larger than the route's `max_body_bytes`.
    BodyTooLarge,
    /// The request head is larger than `max_header_bytes` or has more than `max_header_count` fields.
    HeaderTooLarge,
    MethodNotAllowed,
    NoRoute,
    /// The route exists but its backend cannot be used (the snapshot says why).
    BackendUnavailable,
    NoEndpoints,
    UpstreamConnect,
    UpstreamConnectTimeout,
    UpstreamTimeout,
    /// The endpoint stopped reading the request body for longer than the route's `send_timeout`.
    UpstreamSendTimeout,
    UpstreamReset,
    UpstreamProtocol,
}

/// Whose fault an error is (STYLE.md §5): it decides the status class and the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The request itself is wrong: 4xx, logged at debug.
    Client,
    /// The configuration sends the request nowhere usable: 404/503, logged at debug (the
    /// diagnostics and the access log already show it).
    Config,
    /// The endpoint failed: 502/504, logged at warn.
    Upstream,
}

// === impl GatewayError ===

impl GatewayError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The response sent to the client.
    pub(crate) fn response(&self) -> Response<ResponseBody> {
        let mut body = String::with_capacity(self.message.len() + 1);
        body.push_str(&self.message);
        body.push('\n');
        let mut resp = Response::new(ResponseBody::full(Bytes::from(body)));
        *resp.status_mut() = self.kind.status();
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        headers.insert(X_PORTIER_ERROR.clone(), HeaderValue::from_static(self.kind.as_str()));
        if self.kind.closes() {
            // RFC 9112 §6.3/§11.2: after a framing error the rest of the stream cannot be trusted;
            // after a refused or stalled body, reading on to find the next request is not worth it.
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

// === impl ErrorKind ===

impl ErrorKind {
    /// The `x-portier-error` value and the access-log `error` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad-request",
            ErrorKind::BadFraming => "bad-framing",
            ErrorKind::BadPath => "bad-path",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Misdirected => "misdirected",
            ErrorKind::BodyTimeout => "body-timeout",
            ErrorKind::BodyTooLarge => "body-too-large",
            ErrorKind::HeaderTooLarge => "header-too-large",
            ErrorKind::MethodNotAllowed => "method-not-allowed",
            ErrorKind::NoRoute => "no-route",
            ErrorKind::BackendUnavailable => "backend-unavailable",
            ErrorKind::NoEndpoints => "no-endpoints",
            ErrorKind::UpstreamConnect => "upstream-connect",
            ErrorKind::UpstreamConnectTimeout => "upstream-connect-timeout",
            ErrorKind::UpstreamTimeout => "upstream-timeout",
            ErrorKind::UpstreamSendTimeout => "upstream-send-timeout",
            ErrorKind::UpstreamReset => "upstream-reset",
            ErrorKind::UpstreamProtocol => "upstream-protocol",
        }
    }

    pub(crate) fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest | ErrorKind::BadFraming | ErrorKind::BadPath => StatusCode::BAD_REQUEST,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ErrorKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::BackendUnavailable | ErrorKind::NoEndpoints => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamReset | ErrorKind::UpstreamProtocol => {
                StatusCode::BAD_GATEWAY
            }
            // nginx answers 504 for both timeouts too: the endpoint exists but did not answer.
            ErrorKind::UpstreamConnectTimeout | ErrorKind::UpstreamTimeout | ErrorKind::UpstreamSendTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    /// Whether the connection is closed after this error (HTTP/1.1 `Connection: close`).
    pub(crate) fn closes(self) -> bool {
        matches!(
            self,
            ErrorKind::BadFraming | ErrorKind::BodyTimeout | ErrorKind::BodyTooLarge | ErrorKind::HeaderTooLarge
        )
    }

    pub(crate) fn side(self) -> Side {
        match self {
            ErrorKind::BadRequest
            | ErrorKind::BadFraming
            | ErrorKind::BadPath
            | ErrorKind::Forbidden
            | ErrorKind::Misdirected
            | ErrorKind::BodyTimeout
            | ErrorKind::BodyTooLarge
            | ErrorKind::HeaderTooLarge
            | ErrorKind::MethodNotAllowed => Side::Client,
            ErrorKind::NoRoute | ErrorKind::BackendUnavailable | ErrorKind::NoEndpoints => Side::Config,
            ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamConnectTimeout
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamSendTimeout
            | ErrorKind::UpstreamReset
            | ErrorKind::UpstreamProtocol => Side::Upstream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_side() {
        let kinds = [
            ErrorKind::BadRequest,
            ErrorKind::BadFraming,
            ErrorKind::BadPath,
            ErrorKind::Forbidden,
            ErrorKind::Misdirected,
            ErrorKind::BodyTimeout,
            ErrorKind::BodyTooLarge,
            ErrorKind::HeaderTooLarge,
            ErrorKind::UpstreamSendTimeout,
            ErrorKind::MethodNotAllowed,
            ErrorKind::NoRoute,
            ErrorKind::BackendUnavailable,
            ErrorKind::NoEndpoints,
            ErrorKind::UpstreamConnect,
            ErrorKind::UpstreamConnectTimeout,
            ErrorKind::UpstreamTimeout,
            ErrorKind::UpstreamReset,
            ErrorKind::UpstreamProtocol,
        ];
        for kind in kinds {
            let status = kind.status().as_u16();
            let ok = match kind.side() {
                Side::Client => (400..500).contains(&status),
                Side::Config => status == 404 || status == 503,
                Side::Upstream => status == 502 || status == 504,
            };
            assert!(ok, "{kind:?} -> {status}");
            let resp = GatewayError::new(kind, "x").response();
            assert_eq!(resp.headers()[&X_PORTIER_ERROR], kind.as_str(), "{kind:?}");
        }
    }
}
