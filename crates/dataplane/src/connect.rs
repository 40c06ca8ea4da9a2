//! The upstream connector: hyper-util's `HttpConnector` with the connect timeout of the route
//! being served, which the legacy client cannot pass per request. The proxy sets it with
//! [`CONNECT_TIMEOUT`]`.scope(..)` around the request; the client asks the connector for a new
//! connection while polling that request (the first poll of its lazy connect future), so the
//! value is read synchronously in [`Service::call`], before any task hop.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::body::BoxError;

tokio::task_local! {
    /// The connect timeout of the route whose request is being sent.
    pub(crate) static CONNECT_TIMEOUT: Duration;
}

/// Used when no route set one (never on the request path; kept as a safe bound).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(crate) struct Connector {
    inner: HttpConnector,
}

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

// === impl Connector ===

impl Connector {
    pub(crate) fn new() -> Self {
        let mut inner = HttpConnector::new();
        inner.set_nodelay(true);
        Self { inner }
    }
}

impl Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let limit = CONNECT_TIMEOUT.try_with(|t| *t).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let connecting = self.inner.call(dst);
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(Box::new(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")) as BoxError),
            }
        })
    }
}
