//! HTTP and WebSocket transport: `/graphql` (POST, GET, GraphiQL for
//! browsers, `graphql-transport-ws` and legacy `graphql-ws`) and `/healthz`.
//! `/graphql` follows the GraphQL-over-HTTP spec (see [`crate::http_media`]):
//! the response type is negotiated, POST bodies must be JSON, and GET never
//! runs a mutation (a link or a prefetch must not change a setpoint).

use std::net::SocketAddr;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::Executor;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hearth_domain::services::AuthService;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use tokio::net::TcpListener;

use crate::api::{BearerToken, Caller, ClientAddr, CodedSchema, HearthSchema};
use crate::http_media::{self, ResponseType};
use crate::http_request::{self, HttpLimits};
use crate::ws::{WsHub, WsLimits};

#[derive(Clone)]
struct AppState {
    schema: CodedSchema,
    hearth: AuthService,
    ws: WsHub,
    http: HttpLimits,
    graphiql: bool,
}

/// What the HTTP transport does beyond GraphQL itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    pub limits: HttpLimits,
    /// What a GraphQL document may cost (HTTP and WebSocket alike).
    pub query: crate::limits::QueryLimits,
    /// Serve GraphiQL (the page and its assets) to browsers.
    pub graphiql: bool,
    /// Origins a browser may call the API from (CORS); empty: same origin only.
    pub cors_origins: Vec<String>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            limits: HttpLimits::default(),
            query: Default::default(),
            graphiql: true,
            cors_origins: Vec::new(),
        }
    }
}

/// The routes with the default [`HttpOptions`].
pub fn router(schema: HearthSchema, hearth: AuthService) -> Router {
    router_with(
        schema,
        hearth,
        WsLimits::default(),
        HttpOptions::default(),
        Router::new(),
    )
}

/// [`router`] with other limits (tests use short WebSocket timeouts; config
/// sets both) and `extra` routes (the CSV export) that get the same request
/// id, trace and CORS layers as `/graphql`: merged before the layers, not
/// after, or their requests would go unlogged and carry no id.
pub fn router_with(
    schema: HearthSchema,
    hearth: AuthService,
    ws_limits: WsLimits,
    http: HttpOptions,
    extra: Router,
) -> Router {
    let request_id = header::HeaderName::from_static("x-request-id");
    let mut router = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }));
    if http.graphiql {
        router = router.merge(crate::graphiql::routes());
    }
    let mut router = router
        .with_state(AppState {
            ws: WsHub::new(
                hearth.clone(),
                CodedSchema::with_limits(schema.clone(), http.query),
                ws_limits,
            ),
            schema: CodedSchema::with_limits(schema, http.query),
            hearth,
            http: http.limits,
            graphiql: http.graphiql,
        })
        .merge(extra);
    if let Some(cors) = cors_layer(&http.cors_origins) {
        router = router.layer(cors);
    }
    router
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// CORS for the configured origins (validated by config, so an origin that
/// is no header value cannot occur there; it is skipped here regardless).
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT]),
    )
}

/// The token of an `Authorization` value (`Bearer` is optional).
pub(crate) fn bearer_token(value: &str) -> &str {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim()
}

/// Resolves the bearer token of a request, if any.
pub(crate) async fn caller(hearth: &AuthService, authorization: Option<&str>) -> Caller {
    let Some(value) = authorization else {
        return Caller::Anonymous;
    };
    let token = bearer_token(value);
    if token.is_empty() || token.len() > 4096 {
        return Caller::Rejected;
    }
    caller_from(hearth.authenticate(token).await)
}

/// What an authentication outcome makes of the caller: only a token the
/// domain refused is `Rejected`; a failure to check it (a store is down) is
/// `Unavailable`, so a good token is never answered `UNAUTHENTICATED`.
fn caller_from(outcome: Result<hearth_domain::Principal, hearth_domain::DomainError>) -> Caller {
    match outcome {
        Ok(principal) => Caller::User(Box::new(principal)),
        Err(hearth_domain::DomainError::Unauthenticated) => Caller::Rejected,
        Err(err) => {
            tracing::error!(error = ?err, "Authenticating a token failed.");
            Caller::Unavailable
        }
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The TCP peer of a request, when the server was started with
/// [`serve`] (connect info); `None` for routers driven some other way.
fn client_addr(extensions: &axum::http::Extensions) -> Option<ClientAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| ClientAddr(addr.ip()))
}

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    client: Option<ClientAddr>,
    request: async_graphql::Request,
    kind: ResponseType,
) -> Response {
    let caller = caller(&state.hearth, authorization(headers)).await;
    let mut request = request.data(caller);
    if let Some(value) = authorization(headers) {
        request = request.data(BearerToken(bearer_token(value).into()));
    }
    if let Some(client) = client {
        request = request.data(client);
    }
    http_media::respond(state.schema.execute(request).await, kind)
}

/// The body is read within its limit before anything else happens to it
/// (not even authentication: a token does not make a 20 MB body cheap).
async fn graphql_post(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(kind) = http_media::negotiate(&parts.headers) else {
        return http_media::not_acceptable();
    };
    let client = client_addr(&parts.extensions);
    match http_request::from_post(&parts.headers, body, &state.http).await {
        Ok(request) => execute(&state, &parts.headers, client, request, kind).await,
        Err(refusal) => http_media::refuse(refusal, kind),
    }
}

/// Serves `router` on `listener` with each connection's peer address
/// available to handlers (login throttling keys on it).
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// GET serves three things on one path: WebSocket upgrades, GraphiQL for a
/// browser that asks for HTML without a query, and queries in the URL.
async fn graphql_get(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let is_upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_upgrade {
        let Some(protocol) = crate::ws::requested_protocol(&parts.headers) else {
            return (
                StatusCode::BAD_REQUEST,
                "unsupported WebSocket sub-protocol: use graphql-transport-ws or graphql-ws",
            )
                .into_response();
        };
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
        let Some(handshake) = state.ws.reserve_handshake() else {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many WebSocket handshakes in progress; retry shortly",
            )
                .into_response();
        };
        let header_auth = authorization(&parts.headers).map(str::to_owned);
        let client = client_addr(&parts.extensions);
        let max = state.ws.limits().max_message_bytes;
        let hub = state.ws.clone();
        return upgrade
            .protocols(ALL_WEBSOCKET_PROTOCOLS)
            .max_message_size(max)
            .max_frame_size(max)
            // Idle sockets are the common case: small buffers keep a
            // thousand of them cheap (tungstenite's default is 128 KiB each).
            .read_buffer_size(8 * 1024)
            .write_buffer_size(8 * 1024)
            .max_write_buffer_size(4 * 1024 * 1024)
            .on_upgrade(move |socket| {
                crate::ws::serve_socket(hub, socket, protocol, header_auth, client, handshake)
            });
    }
    let wants_html = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let has_query = parts.uri.query().is_some_and(|q| q.contains("query="));
    if wants_html && !has_query && state.graphiql {
        return crate::graphiql::page_response();
    }
    let Some(kind) = http_media::negotiate(&parts.headers) else {
        return http_media::not_acceptable();
    };
    let client = client_addr(&parts.extensions);
    let mut request = match http_request::from_query_string(parts.uri.query(), &state.http) {
        Ok(request) => request,
        Err(refusal) => return http_media::refuse(refusal, kind),
    };
    if is_mutation(&mut request, &state.schema) {
        let mut response = http_media::refuse(
            http_request::Refusal::MutationOverGet,
            ResponseType::GraphqlResponseJson,
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, &parts.headers, client, request, kind).await
}

/// Whether `request` would run a mutation. The document is checked against
/// the text limits before it is parsed, and the parse is kept in the request
/// for execution; a document that fails either is not a mutation here and
/// gets its error from execution.
fn is_mutation(request: &mut async_graphql::Request, schema: &CodedSchema) -> bool {
    if crate::limits::check_text(&request.query, schema.limits()).is_err() {
        return false;
    }
    let operation_name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    let ty = match (&document.operations, operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| op.node.ty),
        // Several operations and no name is an error execution reports.
        (DocumentOperations::Multiple(_), None) => None,
    };
    ty == Some(OperationType::Mutation)
}
