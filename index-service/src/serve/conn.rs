//! One connection: hyper's HTTP/1.1 over a [`Watched`] socket, in front of the router.
//!
//! Before a request reaches the router its head is measured: a target longer than
//! [`MAX_URI_BYTES`] is answered `414`, a header section larger than [`MAX_HEADER_BYTES`]
//! `431`, both as JSON and closing the connection. (hyper itself refuses heads that do not fit
//! its [`MAX_HEAD_BYTES`] buffer or carry more than [`MAX_HEADERS`] headers; [`super::io`]
//! makes those answers JSON.)

use std::convert::Infallible;
use std::future::{Future, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::caps::Permit;
use super::io::{Activity, InFlight, Watched};
use super::{Limits, MAX_HEAD_BYTES, MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES};
use crate::http::error::error_response;
use crate::metrics::Metrics;

/// What a connection task needs.
pub struct Connection {
    /// The whole HTTP API.
    pub router: Router,
    /// The client's address, given to handlers as `ConnectInfo<SocketAddr>`.
    pub remote: SocketAddr,
    /// Deadlines.
    pub limits: Limits,
    /// Where timeouts and refusals are counted.
    pub metrics: Arc<Metrics>,
}

impl Connection {
    /// Serves `stream` until the client or a deadline closes it, or until a shutdown requested
    /// through `stop` has let the request in flight finish. `permit` holds its place under the
    /// caps meanwhile.
    pub async fn serve(self, stream: TcpStream, permit: Permit, stop: CancellationToken) {
        let open = self.metrics.connections.open.clone();
        open.increment(1.0);
        let activity = Arc::new(Activity::default());
        let io = Watched::new(stream, activity.clone(), &self.limits, self.metrics.clone());
        let remote = self.remote;
        let service = Service {
            router: self.router,
            remote,
            activity,
            metrics: self.metrics,
        };
        let connection = http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS)
            // Deadlines are Watched's; hyper's would be one duration for header and idle.
            .header_read_timeout(None)
            // One buffer per write, so Watched sees hyper's error heads whole.
            .writev(false)
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%remote, %error, "connection ended");
                    }
                    break;
                }
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
        open.decrement(1.0);
        drop(permit);
    }
}

/// The router as hyper's per-connection service.
#[derive(Clone)]
struct Service {
    router: Router,
    remote: SocketAddr,
    activity: Arc<Activity>,
    metrics: Arc<Metrics>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        let in_flight = InFlight::start(&self.activity);
        if let Some(mut refused) = oversized_head(&request) {
            refused
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            self.metrics.request(
                request.method(),
                "unmatched",
                refused.status().as_u16(),
                std::time::Duration::ZERO,
            );
            drop(in_flight);
            return Box::pin(ready(Ok(refused)));
        }
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.remote));
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await;
            drop(in_flight);
            response
        })
    }
}

/// A JSON `414` or `431` for a request head over our limits.
fn oversized_head<B>(request: &Request<B>) -> Option<Response> {
    let uri = request.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, str::len);
    if target > MAX_URI_BYTES {
        return Some(error_response(
            StatusCode::URI_TOO_LONG,
            format!(
                "the request target is {target} bytes long, more than the {MAX_URI_BYTES} \
                 accepted; send shorter paths and queries"
            ),
        ));
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > MAX_HEADER_BYTES {
        return Some(error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the headers take {headers} bytes, more than the {MAX_HEADER_BYTES} accepted; \
                 send fewer or shorter headers"
            ),
        ));
    }
    None
}
