//! The HTTP surface: routes, middleware and the OpenAPI document generated from the handlers.

pub mod auth;
pub mod error;
mod health;
mod json;
mod mailbox;
mod owner;
pub mod peers;
mod proxy;
pub mod ratelimit;
mod rooms;
mod updates;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::error::error_response;
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "peerlink index",
        description = "Peers register their UDP address and look each other up, by UUID or by name, and find the members of rooms. Every error is a JSON object with an `error` string. Records expire unless their owner refreshes them within the index's TTL; owners alone may change them. Each client IP has a read and a write rate budget (429 with Retry-After when spent). See docs/index.md.",
        license(name = "MIT OR Apache-2.0")
    ),
    tags(
        (name = "peers", description = "Registration, lookup and owner-only changes"),
        (name = "rooms", description = "Who is in which room; owners join and leave"),
        (name = "mailbox", description = "Sealed letters for peers that are offline: signed senders deposit, owners take and delete, and block senders"),
        (name = "operations", description = "Health checks and metrics")
    ),
    modifiers(&OwnerAuth)
)]
struct ApiDoc;

/// The two ways an owner proves itself, as OpenAPI security schemes.
struct OwnerAuth;

impl Modify for OwnerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Keyless records: `Authorization: Bearer <token>`, the token returned by the registration.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "owner_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "Keyed records: `Signature <timestamp>.<hex signature>`, the record key's Ed25519 signature over proto::identity::owner_message(method, path with its query as sent, body, timestamp), timestamp in Unix seconds within 300 s of the index's clock. Each signature is accepted once.",
            ))),
        );
        components.add_security_scheme(
            "sender_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "Mailbox deposits: `Signature <timestamp>.<hex signature>`, the Ed25519 signature of the sender's key (the live keyed record `from` of the body) over proto::identity::owner_message(\"POST\", path, body, timestamp), timestamp in Unix seconds within 300 s of the index's clock. Each signature is accepted once.",
            ))),
        );
    }
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(peers::register))
        .routes(routes!(peers::find_by_name))
        .routes(routes!(
            peers::get_peer,
            updates::update_peer,
            updates::delete_peer
        ))
        .routes(routes!(updates::heartbeat))
        .routes(routes!(rooms::list_rooms))
        .routes(routes!(rooms::get_room))
        .routes(routes!(rooms::join_room, rooms::leave_room))
        .routes(routes!(
            mailbox::deposit,
            mailbox::take::take_mail,
            mailbox::take::delete_mail
        ))
        .routes(routes!(
            mailbox::take::block_sender,
            mailbox::take::unblock_sender
        ))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The OpenAPI document of every route [`app`] serves; `openapi.yaml` is this, rendered.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes().into_openapi();
    require_key_for_name(&mut doc);
    sealed_is_base64(&mut doc);
    doc
}

/// Says in the schema of `Deposit` what the derive cannot: `sealed` is standard padded
/// base64 (with zero padding bits, as encoders write it) of at least one byte.
fn sealed_is_base64(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Schema};
    let schema = doc
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut("Deposit"));
    let Some(RefOr::T(Schema::Object(object))) = schema else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(sealed))) = object.properties.get_mut("sealed") {
        // No maxLength: a longer letter is answered 413 (the contract's status for a letter
        // too large), which a schema bound would make a "malformed request" wanting a 400.
        sealed.min_length = Some(4);
        sealed.pattern = Some(
            "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
                .into(),
        );
    }
}

/// Says in the schema of `RegisterRequest` what the derive cannot: a `name` or `candidates`
/// need a keyed registration (`public_key`, `timestamp`, `signature`), so a client generating
/// requests from the contract knows a keyless one with either is refused.
fn require_key_for_name(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Schema};
    let schema = doc
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut("RegisterRequest"));
    if let Some(RefOr::T(Schema::Object(object))) = schema {
        object
            .extensions
            .get_or_insert_with(Default::default)
            .insert(
                "anyOf".into(),
                serde_json::json!([
                    {
                        "properties": {
                            "name": { "type": "null" },
                            "candidates": { "maxItems": 0 }
                        }
                    },
                    {
                        "required": ["public_key", "timestamp", "signature"],
                        "properties": {
                            "public_key": { "type": "string" },
                            "timestamp": { "type": "integer" },
                            "signature": { "type": "string" }
                        }
                    }
                ]),
            );
    }
}

/// The whole service as a router, served by [`crate::serve`] or driven with `oneshot` in tests.
pub fn app(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let (router, _) = routes().split_for_parts();
    router
        .fallback(not_found)
        .with_state(state.clone())
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(middleware::from_fn_with_state(state, edge))
        .layer(CatchPanicLayer::custom(|_| {
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the index logged the details",
            )
        }))
        .layer(TraceLayer::new_for_http())
}

async fn not_found(request: Request) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {} {}; see openapi.yaml for the API",
            request.method(),
            request.uri().path()
        ),
    )
}

/// The service's edge, as one middleware (one boxed future per request rather than one per
/// concern): refuses clients over their rate budget (429), bounds the time a request may take
/// (503), rewrites errors that are not JSON yet, and counts and times every answer by method,
/// route template and status.
async fn edge(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    proxy::resolve_client(&state.config.trusted_proxies, &mut request);
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = match ratelimit::admit(&state, &request) {
        Err(refused) => axum::response::IntoResponse::into_response(refused),
        Ok(()) => {
            let limit = state.config.request_timeout;
            match tokio::time::timeout(limit, next.run(request)).await {
                Ok(response) => json_errors(&method, response),
                Err(_) => error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the request took longer than {limit:?}; try again later"),
                ),
            }
        }
    };
    state.metrics.request(
        &method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Rewrites any error response that is not JSON yet (axum's 405, the body limit's 413, …) into
/// our `{"error": …}` format so clients never have to parse plain text.
fn json_errors(method: &Method, response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not allowed on this path (see openapi.yaml)")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the body is too large; registrations are small JSON objects".into()
        }
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let rewritten = error_response(status, message);
    parts.headers.insert(
        header::CONTENT_TYPE,
        rewritten.headers()[header::CONTENT_TYPE].clone(),
    );
    Response::from_parts(parts, rewritten.into_body())
}
