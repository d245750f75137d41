//! HTTP and WebSocket transport: `/graphql` (POST, GET, GraphiQL for
//! browsers, `graphql-transport-ws` and legacy `graphql-ws`) and `/healthz`.

use std::net::SocketAddr;
use std::time::Duration;

use async_graphql::http::{GraphiQLSource, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{Data, Executor};
use async_graphql_axum::{GraphQLProtocol, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hearth_domain::services::Hearth;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use tokio::net::TcpListener;

use crate::api::{Caller, ClientAddr, CodedSchema, HearthSchema};
use crate::http_request::{self, HttpLimits};

#[derive(Clone)]
struct AppState {
    schema: CodedSchema,
    hearth: Hearth,
    http: HttpLimits,
}

/// The routes with the default [`HttpLimits`].
pub fn router(schema: HearthSchema, hearth: Hearth) -> Router {
    router_with_limits(schema, hearth, HttpLimits::default())
}

pub fn router_with_limits(schema: HearthSchema, hearth: Hearth, http: HttpLimits) -> Router {
    let request_id = header::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(AppState {
            schema: CodedSchema::new(schema),
            hearth,
            http,
        })
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

/// Resolves the bearer token of a request, if any.
async fn caller(hearth: &Hearth, authorization: Option<&str>) -> Caller {
    let Some(value) = authorization else {
        return Caller::Anonymous;
    };
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim();
    if token.is_empty() || token.len() > 4096 {
        return Caller::Rejected;
    }
    match hearth.authenticate(token).await {
        Ok(principal) => Caller::User(Box::new(principal)),
        Err(hearth_domain::DomainError::Unauthenticated) => Caller::Rejected,
        Err(err) => {
            tracing::error!(error = ?err, "Authenticating a token failed.");
            Caller::Rejected
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
) -> GraphQLResponse {
    let caller = caller(&state.hearth, authorization(headers)).await;
    let mut request = request.data(caller);
    if let Some(client) = client {
        request = request.data(client);
    }
    state.schema.execute(request).await.into()
}

/// The body is read within its limit before anything else happens to it
/// (not even authentication: a token does not make a 20 MB body cheap).
async fn graphql_post(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let client = client_addr(&parts.extensions);
    match http_request::from_post(&parts.headers, body, &state.http).await {
        Ok(request) => execute(&state, &parts.headers, client, request)
            .await
            .into_response(),
        Err(refusal) => refusal.into_response(),
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
        let protocol = match GraphQLProtocol::from_request_parts(&mut parts, &state).await {
            Ok(protocol) => protocol,
            Err(status) => return (status, "unsupported WebSocket sub-protocol").into_response(),
        };
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
        let header_auth = authorization(&parts.headers).map(str::to_owned);
        return upgrade
            .protocols(ALL_WEBSOCKET_PROTOCOLS)
            .on_upgrade(move |socket| async move {
                let hearth = state.hearth.clone();
                GraphQLWebSocket::new(socket, state.schema.clone(), protocol)
                    .on_connection_init(move |payload| {
                        connection_init(hearth, payload, header_auth)
                    })
                    .keepalive_timeout(Duration::from_secs(30))
                    .serve()
                    .await
            });
    }
    let wants_html = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let has_query = parts.uri.query().is_some_and(|q| q.contains("query="));
    if wants_html && !has_query {
        return Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .title("Hearth GraphQL")
                .finish(),
        )
        .into_response();
    }
    let client = client_addr(&parts.extensions);
    match http_request::from_query_string(parts.uri.query(), &state.http) {
        Ok(request) => execute(&state, &parts.headers, client, request)
            .await
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// `connection_init` carries `{ "authorization": "Bearer …" }`; a present but
/// invalid token closes the connection, a missing one leaves it anonymous
/// (every operation then answers `UNAUTHENTICATED`).
async fn connection_init(
    hearth: Hearth,
    payload: serde_json::Value,
    header_auth: Option<String>,
) -> async_graphql::Result<Data> {
    let from_payload = payload
        .as_object()
        .and_then(|o| o.get("authorization").or_else(|| o.get("Authorization")))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let caller = caller(&hearth, from_payload.or(header_auth).as_deref()).await;
    if matches!(caller, Caller::Rejected) {
        return Err(async_graphql::Error::new("invalid or expired token"));
    }
    let mut data = Data::default();
    data.insert(caller);
    Ok(data)
}
