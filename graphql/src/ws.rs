//! GraphQL over WebSocket (`graphql-transport-ws` and legacy `graphql-ws`)
//! with the guards a public endpoint needs: a handshake deadline, a bounded
//! number of subscriptions per connection and connections per user, unique
//! operation ids, server-initiated keepalive that drops dead peers, and a
//! session that is re-checked every second, so an expired token, a removed
//! membership or a disabled user ends the live streams it authorized, and
//! a changed role or scope narrows them in place: each running operation
//! gets the new principal and stops delivering what it no longer covers.
//! On `graphql-transport-ws` the server then sends
//! `{"type":"ping","payload":{"accessChanged":true}}`: whatever comes after
//! it on that socket was filtered by the new access.
//!
//! async-graphql's own `WebSocket` speaks the protocols; this module feeds
//! it parsed client messages (after checking them) and decides when the
//! connection ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::http::{
    ClientMessage, WebSocket as GraphQLWebSocket, WebSocketProtocols as Protocols, WsMessage,
};
use async_graphql::{Data, Executor, Request, Response, ServerError};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::{self, BoxStream, StreamExt};
use futures::SinkExt;
use hearth_domain::services::AuthService;
use hearth_domain::{DomainError, Principal, UserId};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::api::error::Code;
use crate::api::{AccessChanges, BearerToken, Caller, ClientAddr, CodedSchema};

/// Limits of the WebSocket endpoint; [`WsLimits::default`] is what `serve` uses.
#[derive(Debug, Clone)]
pub struct WsLimits {
    /// Largest message (and frame) a client may send; bigger ones close the socket.
    pub max_message_bytes: usize,
    /// A socket without `connection_init` by then is closed with 4408.
    pub init_timeout: Duration,
    /// How often the server pings (a WebSocket ping frame plus the protocol's
    /// `ping` or `ka` message).
    pub keepalive_interval: Duration,
    /// A peer that sent nothing at all (not even a pong) for this long is dropped.
    pub peer_timeout: Duration,
    /// Operations running at once on one connection.
    pub max_subscriptions: usize,
    /// Open, initialised connections of one user across the server.
    pub max_connections_per_user: usize,
    /// Sockets upgraded but not yet initialised, server-wide; more are refused with 503.
    pub max_pending_handshakes: usize,
    /// Longest operation id accepted.
    pub max_id_len: usize,
    /// How often the session behind a connection is re-checked.
    pub session_check_interval: Duration,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            init_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(15),
            peer_timeout: Duration::from_secs(45),
            max_subscriptions: 100,
            max_connections_per_user: 64,
            max_pending_handshakes: 1_024,
            max_id_len: 128,
            session_check_interval: Duration::from_secs(1),
        }
    }
}

/// Close codes of the `graphql-transport-ws` protocol (and ours in its range).
mod close {
    pub const BAD_MESSAGE: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
    pub const TOO_MANY: u16 = 4429;
    /// The server could not check the token (a store failed); retry later.
    pub const INTERNAL: u16 = 4500;
    /// RFC 6455: the peer stopped answering.
    pub const GOING_AWAY: u16 = 1001;
    /// RFC 6455: a message over the size limit.
    pub const TOO_BIG: u16 = 1009;
}

/// State shared by every WebSocket connection of a server.
#[derive(Clone)]
pub struct WsHub {
    hearth: AuthService,
    schema: CodedSchema,
    limits: Arc<WsLimits>,
    per_user: Arc<Mutex<HashMap<UserId, usize>>>,
    pending: Arc<Semaphore>,
}

impl WsHub {
    pub fn new(hearth: AuthService, schema: CodedSchema, limits: WsLimits) -> Self {
        Self {
            pending: Arc::new(Semaphore::new(limits.max_pending_handshakes)),
            hearth,
            schema,
            limits: Arc::new(limits),
            per_user: Arc::default(),
        }
    }

    pub fn limits(&self) -> &WsLimits {
        &self.limits
    }

    /// A slot for one more socket awaiting `connection_init`, or `None` when
    /// the server already holds as many as it allows.
    pub fn reserve_handshake(&self) -> Option<OwnedSemaphorePermit> {
        self.pending.clone().try_acquire_owned().ok()
    }

    fn admit(&self, user: UserId) -> Option<UserSlot> {
        let mut counts = self.per_user.lock();
        let count = counts.entry(user).or_insert(0);
        if *count >= self.limits.max_connections_per_user {
            return None;
        }
        *count += 1;
        Some(UserSlot {
            user,
            counts: self.per_user.clone(),
        })
    }
}

/// One of a user's connection slots, given back when the connection ends.
struct UserSlot {
    user: UserId,
    counts: Arc<Mutex<HashMap<UserId, usize>>>,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(count) = counts.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

/// Where the session of a connection stands, as seen by its operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionState {
    /// The connection's token is still good (its role or scope may change;
    /// the principal travels on its own channel).
    Current,
    /// Token expired, membership removed or user gone.
    Ended,
}

/// Put into the connection's data at `connection_init`; every operation
/// re-authenticates with it.
#[derive(Clone)]
struct SocketSession {
    token: Option<Arc<str>>,
    client: Option<ClientAddr>,
    state: watch::Receiver<SessionState>,
    access: watch::Receiver<Option<Principal>>,
}

/// What `connection_init` decided, read by the connection loop.
#[derive(Default)]
struct InitOutcome {
    done: bool,
    token: Option<Arc<str>>,
    principal: Option<Principal>,
    slot: Option<UserSlot>,
    /// The close code for a refused init (async-graphql would send 1002).
    refused: Option<(u16, String)>,
}

/// What the inbound side asks the connection loop to do.
enum Control {
    Close(u16, String),
    /// Refuse one operation without starting it.
    Refuse {
        id: String,
        code: Code,
        message: String,
    },
}

/// The sub-protocol a client asked for, if it is one we speak.
pub fn requested_protocol(headers: &axum::http::HeaderMap) -> Option<Protocols> {
    headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|protocols| {
            protocols
                .split(',')
                .find_map(|p| p.trim().parse::<Protocols>().ok())
        })
}

/// Serves one upgraded socket until either side ends it.
pub async fn serve_socket(
    hub: WsHub,
    socket: WebSocket,
    protocol: Protocols,
    header_auth: Option<String>,
    client: Option<ClientAddr>,
    handshake: OwnedSemaphorePermit,
) {
    let limits = hub.limits.clone();
    let (mut sink, inbound) = socket.split();
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Control>();
    let (state_tx, state_rx) = watch::channel(SessionState::Current);
    let (access_tx, access_rx) = watch::channel(None::<Principal>);
    let active: Arc<Mutex<HashSet<String>>> = Arc::default();
    let last_heard = Arc::new(Mutex::new(Instant::now()));
    let init = Arc::new(Mutex::new(InitOutcome::default()));

    let messages = client_messages(
        inbound,
        limits.clone(),
        active.clone(),
        last_heard.clone(),
        control_tx,
    );
    let executor = SessionExecutor {
        schema: hub.schema.clone(),
        hearth: hub.hearth.clone(),
    };
    let on_init = {
        let hub = hub.clone();
        let init = init.clone();
        move |payload: serde_json::Value| {
            connection_init(
                hub,
                payload,
                header_auth,
                client,
                (state_rx, access_rx),
                init,
            )
        }
    };
    let mut graphql = GraphQLWebSocket::from_message_stream(executor, messages, protocol)
        .on_connection_init(on_init)
        .boxed();

    let started = Instant::now();
    let mut handshake = Some(handshake);
    let mut tick = tokio::time::interval(limits.session_check_interval.min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ping = Instant::now();

    let ending: Option<(u16, String)> = loop {
        tokio::select! {
            out = graphql.next() => match out {
                Some(WsMessage::Text(text)) => {
                    if let Some(id) = completed_id(&text) {
                        active.lock().remove(&id);
                    }
                    if handshake.is_some() && init_done(&init) {
                        handshake = None;
                    }
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    let refused = init.lock().refused.take();
                    // async-graphql closes with 1011 when an operation comes
                    // before `connection_init`; the protocol says 4401.
                    if code == 1011 && !init_done(&init) {
                        break Some((close::UNAUTHORIZED, "Unauthorized".into()));
                    }
                    break Some(refused.unwrap_or((code, reason)));
                }
                None => break None,
            },
            Some(control) = control_rx.recv() => match control {
                Control::Close(code, reason) => break Some((code, reason)),
                Control::Refuse { id, code, message } => {
                    let text = error_message(protocol, &id, code, &message);
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                }
            },
            _ = tick.tick() => {
                let initialised = init_done(&init);
                if !initialised && started.elapsed() >= limits.init_timeout {
                    break Some((close::INIT_TIMEOUT, "Connection initialisation timeout".into()));
                }
                let silent = last_heard.lock().elapsed();
                if silent >= limits.peer_timeout {
                    break Some((close::GOING_AWAY, "No answer to keepalive".into()));
                }
                if last_ping.elapsed() >= limits.keepalive_interval {
                    last_ping = Instant::now();
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break None;
                    }
                    if initialised {
                        let keepalive = match protocol {
                            Protocols::GraphQLWS => r#"{"type":"ping"}"#,
                            Protocols::SubscriptionsTransportWS => r#"{"type":"ka"}"#,
                        };
                        if sink.send(Message::Text(keepalive.into())).await.is_err() {
                            break None;
                        }
                    }
                }
                if initialised {
                    handshake = None;
                    match recheck_session(&hub.hearth, &init).await {
                        Recheck::Same => {}
                        Recheck::Changed(principal) => {
                            // The operations narrow themselves before they
                            // are polled again; the ping goes out after, so
                            // a client can tell which values came under the
                            // new access.
                            let _ = access_tx.send(Some(principal));
                            if protocol == Protocols::GraphQLWS {
                                let notice = r#"{"type":"ping","payload":{"accessChanged":true}}"#;
                                if sink.send(Message::Text(notice.into())).await.is_err() {
                                    break None;
                                }
                            }
                        }
                        Recheck::Ended => {
                            let _ = state_tx.send(SessionState::Ended);
                            // Let each running operation send its error and
                            // `complete` before the connection goes.
                            drain(&mut graphql, &mut sink, &active).await;
                            break Some((close::FORBIDDEN, "Forbidden: session ended".into()));
                        }
                    }
                }
            }
        }
    };
    if let Some((code, reason)) = ending {
        let frame = CloseFrame {
            code,
            reason: truncated(reason, 120).into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
    let _ = sink.close().await;
    // The user's connection slot (inside `init`) is released when the last
    // reference goes, which is here or when async-graphql drops its callback.
    drop(init);
}

fn init_done(init: &Mutex<InitOutcome>) -> bool {
    init.lock().done
}

/// Sends what the operations still have to say, for at most half a second.
async fn drain(
    graphql: &mut BoxStream<'static, WsMessage>,
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    active: &Mutex<HashSet<String>>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while !active.lock().is_empty() {
        match tokio::time::timeout_at(deadline, graphql.next()).await {
            Ok(Some(WsMessage::Text(text))) => {
                if let Some(id) = completed_id(&text) {
                    active.lock().remove(&id);
                }
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

enum Recheck {
    Same,
    /// The same user, with another role or scope.
    Changed(Principal),
    Ended,
}

/// Authenticates the connection's token again. Only a definite refusal ends
/// the session: a store that cannot answer right now does not cut every
/// operator off (the next check asks again).
async fn recheck_session(hearth: &AuthService, init: &Mutex<InitOutcome>) -> Recheck {
    let (token, before) = {
        let i = init.lock();
        (i.token.clone(), i.principal.clone())
    };
    let Some(token) = token else {
        return Recheck::Same;
    };
    match hearth.authenticate(&token).await {
        Ok(now) if Some(&now) == before.as_ref() => Recheck::Same,
        Ok(now) => {
            init.lock().principal = Some(now.clone());
            Recheck::Changed(now)
        }
        Err(DomainError::Unauthenticated) => Recheck::Ended,
        Err(err) => {
            tracing::warn!(error = %err, "Could not re-check a WebSocket session; keeping it for now.");
            Recheck::Same
        }
    }
}

/// `connection_init` carries `{ "authorization": "Bearer …" }` (or the
/// upgrade request's header did). A present but invalid token, or a user
/// over their connection limit, closes the connection; no token leaves it
/// anonymous (every operation then answers `UNAUTHENTICATED`).
async fn connection_init(
    hub: WsHub,
    payload: serde_json::Value,
    header_auth: Option<String>,
    client: Option<ClientAddr>,
    (state, access): (
        watch::Receiver<SessionState>,
        watch::Receiver<Option<Principal>>,
    ),
    init: Arc<Mutex<InitOutcome>>,
) -> async_graphql::Result<Data> {
    let from_payload = payload
        .as_object()
        .and_then(|o| o.get("authorization").or_else(|| o.get("Authorization")))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let token = from_payload
        .or(header_auth)
        .map(|value| crate::server::bearer_token(&value).to_owned());
    let mut outcome = InitOutcome {
        done: true,
        ..InitOutcome::default()
    };
    let result = match token.as_deref() {
        None => Ok(()),
        Some(token) => match crate::server::caller(&hub.hearth, Some(token)).await {
            Caller::User(principal) => match hub.admit(principal.user_id) {
                Some(slot) => {
                    outcome.slot = Some(slot);
                    outcome.principal = Some(*principal);
                    Ok(())
                }
                None => Err((
                    close::TOO_MANY,
                    format!(
                        "Too many connections for this user (at most {})",
                        hub.limits.max_connections_per_user
                    ),
                )),
            },
            Caller::Anonymous | Caller::Rejected => Err((
                close::FORBIDDEN,
                "Forbidden: invalid or expired token".into(),
            )),
            Caller::Unavailable => Err((
                close::INTERNAL,
                "The token could not be checked now; retry later".into(),
            )),
        },
    };
    outcome.token = token.map(Arc::from);
    let session = SocketSession {
        token: outcome.token.clone(),
        client,
        state,
        access,
    };
    let refusal = result.err();
    outcome.refused = refusal.clone();
    *init.lock() = outcome;
    match refusal {
        Some((_, message)) => Err(async_graphql::Error::new(message)),
        None => {
            let mut data = Data::default();
            data.insert(session);
            Ok(data)
        }
    }
}

/// Client frames as protocol messages, checked before async-graphql sees
/// them: operation ids bounded and unique, operations per connection
/// bounded. Ping and pong frames only count as signs of life.
fn client_messages(
    inbound: futures::stream::SplitStream<WebSocket>,
    limits: Arc<WsLimits>,
    active: Arc<Mutex<HashSet<String>>>,
    last_heard: Arc<Mutex<Instant>>,
    control: mpsc::UnboundedSender<Control>,
) -> impl futures::Stream<Item = serde_json::Result<ClientMessage>> + Send + 'static {
    let on_error = control.clone();
    inbound
        // A read error ends the socket: most often a message over the size
        // limit (1009), otherwise the peer is gone and nobody reads the frame.
        .take_while(move |frame| {
            if frame.is_err() {
                let _ = on_error.send(Control::Close(
                    close::TOO_BIG,
                    "Message too big or malformed".into(),
                ));
            }
            futures::future::ready(frame.is_ok())
        })
        .filter_map(move |frame| {
            *last_heard.lock() = Instant::now();
            let bytes = match frame {
                Ok(Message::Text(text)) => Some(axum::body::Bytes::from(text)),
                Ok(Message::Binary(bytes)) => Some(bytes),
                _ => None,
            };
            let checked = bytes.and_then(|bytes| match ClientMessage::from_bytes(&bytes) {
                Ok(message) => admit_message(message, &limits, &active, &control).map(Ok),
                Err(err) => Some(Err(err)),
            });
            futures::future::ready(checked)
        })
}

/// `Some(message)` to pass it on; `None` when it was refused (the refusal
/// is already queued on `control`).
fn admit_message(
    message: ClientMessage,
    limits: &WsLimits,
    active: &Mutex<HashSet<String>>,
    control: &mpsc::UnboundedSender<Control>,
) -> Option<ClientMessage> {
    let ClientMessage::Start { id, payload } = message else {
        if let ClientMessage::Stop { id } = &message {
            active.lock().remove(id);
        }
        return Some(message);
    };
    if id.is_empty() || id.len() > limits.max_id_len {
        let _ = control.send(Control::Close(
            close::BAD_MESSAGE,
            format!("Operation id must be 1 to {} bytes", limits.max_id_len),
        ));
        return None;
    }
    let mut ids = active.lock();
    if ids.contains(&id) {
        let _ = control.send(Control::Close(
            close::DUPLICATE_ID,
            format!(
                "Subscriber for {} already exists",
                truncated(id.clone(), 40)
            ),
        ));
        return None;
    }
    if ids.len() >= limits.max_subscriptions {
        let _ = control.send(Control::Refuse {
            id,
            code: Code::RateLimited,
            message: format!(
                "at most {} operations may run at once on one connection",
                limits.max_subscriptions
            ),
        });
        return None;
    }
    ids.insert(id.clone());
    Some(ClientMessage::Start { id, payload })
}

/// The id of a server `complete` message (async-graphql writes `type` first).
fn completed_id(text: &str) -> Option<String> {
    if !text.starts_with(r#"{"type":"complete""#) {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(text)
        .ok()?
        .get("id")?
        .as_str()
        .map(str::to_owned)
}

/// An `error` message for one operation, in the protocol's shape.
fn error_message(protocol: Protocols, id: &str, code: Code, message: &str) -> String {
    let error = json!({ "message": message, "extensions": { "code": code.as_str() } });
    let payload = match protocol {
        Protocols::GraphQLWS => json!([error]),
        Protocols::SubscriptionsTransportWS => error,
    };
    json!({ "type": "error", "id": id, "payload": payload }).to_string()
}

/// Runs each WebSocket operation as the principal its connection's token
/// stands for *now*, hands it the principal's later changes, and ends a
/// running operation when the session ends.
#[derive(Clone)]
struct SessionExecutor {
    schema: CodedSchema,
    hearth: AuthService,
}

impl Executor for SessionExecutor {
    async fn execute(&self, request: Request) -> Response {
        self.schema.execute(request).await
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let data = session_data.unwrap_or_default();
        let Some(session) = data
            .get(&std::any::TypeId::of::<SocketSession>())
            .and_then(|d| d.downcast_ref::<SocketSession>().cloned())
        else {
            return self.schema.execute_stream(request, Some(data));
        };
        let schema = self.schema.clone();
        let hearth = self.hearth.clone();
        stream::once(async move {
            let mut state = session.state.clone();
            let started_as = *state.borrow_and_update();
            if started_as == SessionState::Ended {
                return stream::once(async { session_ended() }).boxed();
            }
            let caller = crate::server::caller(&hearth, session.token.as_deref()).await;
            if matches!(caller, Caller::Rejected) {
                return stream::once(async { session_ended() }).boxed();
            }
            let mut request = request
                .data(caller)
                .data(AccessChanges(session.access.clone()));
            if let Some(client) = session.client {
                request = request.data(client);
            }
            if let Some(token) = session.token.clone() {
                request = request.data(BearerToken(token));
            }
            let responses = schema.execute_stream(request, Some(data));
            until_session_ends(responses, state)
        })
        .flatten()
        .boxed()
    }
}

/// The responses of one operation, ended with a typed error as soon as the
/// session it runs in ends (a role or scope change is the operation's own
/// business: it narrows in place).
fn until_session_ends(
    responses: BoxStream<'static, Response>,
    state: watch::Receiver<SessionState>,
) -> BoxStream<'static, Response> {
    struct Run {
        responses: BoxStream<'static, Response>,
        state: watch::Receiver<SessionState>,
        done: bool,
    }
    let run = Run {
        responses,
        state,
        done: false,
    };
    stream::unfold(run, |mut run| async move {
        if run.done {
            return None;
        }
        // `true` when the session ended, `false` for a response.
        let (ended, next) = tokio::select! {
            biased;
            _ = run.state.wait_for(|s| *s == SessionState::Ended) => (true, None),
            next = run.responses.next() => (false, next),
        };
        if ended {
            run.done = true;
            return Some((session_ended(), run));
        }
        next.map(|response| (response, run))
    })
    .boxed()
}

fn coded_response(code: Code, message: &str) -> Response {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
    Response::from_errors(vec![error])
}

fn session_ended() -> Response {
    coded_response(
        Code::Unauthenticated,
        "session ended: the token expired or the membership was removed; log in again",
    )
}

/// `text` cut to at most `max` characters, marked when cut: messages that
/// quote client input must not grow with it.
fn truncated(mut text: String, max: usize) -> String {
    crate::api::error::truncate_message(&mut text, max);
    text
}
