//! End-to-end test support: a real `hearth` (embedded stores, oso policy,
//! simulated controllers over Modbus TCP on loopback) started in-process on
//! an ephemeral port, and small HTTP and WebSocket GraphQL clients.

// Test support: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use futures::{SinkExt, StreamExt};
use hearth::app::{self, Config, Running};
use hearth_domain::services::LoginLimits;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

pub const PASSWORD: &str = hearth::demo::PASSWORD;

/// A demo server in a temporary data directory.
pub struct DemoServer {
    pub running: Running,
    pub data_dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl DemoServer {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_tuned(hearth::ws::WsLimits::default(), LoginLimits::default()).await
    }

    /// A demo server with other WebSocket limits (short timeouts for tests).
    pub async fn start_with(ws: hearth::ws::WsLimits) -> anyhow::Result<Self> {
        Self::start_tuned(ws, LoginLimits::default()).await
    }

    /// The demo with login throttling of its own (e.g. lock-outs long enough
    /// that a test never races their end).
    pub async fn start_with_login_limits(login: LoginLimits) -> anyhow::Result<Self> {
        Self::start_tuned(hearth::ws::WsLimits::default(), login).await
    }

    async fn start_tuned(ws: hearth::ws::WsLimits, login: LoginLimits) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let running = start_with(data_dir.path(), true, ws, login).await?;
        Ok(Self {
            running,
            data_dir,
            http: reqwest::Client::new(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.address
    }

    pub fn client(&self) -> Client {
        Client {
            http: self.http.clone(),
            addr: self.addr(),
            token: None,
        }
    }

    /// A client logged in as `email` (demo password), first membership.
    pub async fn login(&self, email: &str) -> anyhow::Result<Client> {
        self.login_to(email, None).await
    }

    pub async fn login_to(&self, email: &str, tenant: Option<&str>) -> anyhow::Result<Client> {
        let mut client = self.client();
        let res = client
            .gql(
                "mutation($e: String!, $p: String!, $t: ID) { login(email: $e, password: $p, tenantId: $t) { token } }",
                json!({ "e": email, "p": PASSWORD, "t": tenant }),
            )
            .await?;
        let token = res["data"]["login"]["token"]
            .as_str()
            .ok_or_else(|| anyhow!("login of {email} failed: {res}"))?;
        client.token = Some(token.to_string());
        Ok(client)
    }
}

/// Starts hearth on an ephemeral port with its data in `dir`.
pub async fn start_in(dir: &Path, demo: bool) -> anyhow::Result<Running> {
    start_with(
        dir,
        demo,
        hearth::ws::WsLimits::default(),
        LoginLimits::default(),
    )
    .await
}

async fn start_with(
    dir: &Path,
    demo: bool,
    ws: hearth::ws::WsLimits,
    login: LoginLimits,
) -> anyhow::Result<Running> {
    app::start(Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.to_path_buf(),
        demo,
        sim_base_port: 0,
        ws,
        login,
        ..Config::default()
    })
    .await
}

/// Starts hearth without the demo, with its data in `dir` and `http` options.
pub async fn start_with_http(
    dir: &Path,
    http: hearth::server::HttpOptions,
) -> anyhow::Result<Running> {
    app::start(Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.to_path_buf(),
        demo: false,
        sim_base_port: 0,
        http,
        ..Config::default()
    })
    .await
}

/// A GraphQL-over-HTTP client with an optional bearer token.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Client {
    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// POSTs a query; returns the whole response body (data and errors).
    pub async fn gql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .post(self.url())
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await?;
        let text = res.text().await?;
        serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))
    }

    /// Like `gql`, but fails unless there are no errors; returns `data`.
    pub async fn data(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let res = self.gql(query, variables).await?;
        if res.get("errors").is_some() {
            return Err(anyhow!("unexpected errors: {res}"));
        }
        Ok(res["data"].clone())
    }

    /// All device ids visible to this client, by name.
    pub async fn device_ids(&self) -> anyhow::Result<Vec<(String, String)>> {
        let data = self
            .data(
                "{ devices(first: 200) { edges { node { id name } } } }",
                json!({}),
            )
            .await?;
        Ok(data["devices"]["edges"]
            .as_array()
            .ok_or_else(|| anyhow!("no edges"))?
            .iter()
            .map(|e| {
                (
                    e["node"]["id"].as_str().unwrap_or_default().to_string(),
                    e["node"]["name"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }
}

/// The `extensions.code` of the first error, if any.
pub fn error_code(res: &Value) -> Option<String> {
    res["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_string)
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket speaking `protocol` without initialising it.
pub async fn ws_open(addr: SocketAddr, protocol: &str) -> anyhow::Result<Ws> {
    let mut request = format!("ws://{addr}/graphql").into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(protocol)?);
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(ws)
}

/// Reads until the server closes the socket; its close code (`None` when
/// the connection ended without a close frame).
pub async fn ws_close_code(ws: &mut Ws, wait: Duration) -> anyhow::Result<Option<u16>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("the socket was not closed within {wait:?}"))?;
        match msg {
            Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| u16::from(f.code))),
            None | Some(Err(_)) => return Ok(None),
            Some(Ok(_)) => continue,
        }
    }
}

/// Opens a connection speaking `protocol` and sends `connection_init`
/// with `payload`; returns the socket and the server's first reply.
pub async fn ws_connect(
    addr: SocketAddr,
    protocol: &str,
    payload: Value,
) -> anyhow::Result<(Ws, Option<Value>)> {
    let mut ws = ws_open(addr, protocol).await?;
    ws.send(Message::Text(
        json!({ "type": "connection_init", "payload": payload })
            .to_string()
            .into(),
    ))
    .await?;
    let first = ws_next(&mut ws, Duration::from_secs(5)).await?;
    Ok((ws, first))
}

/// The next JSON message, `None` when the server closed the socket.
pub async fn ws_next(ws: &mut Ws, wait: Duration) -> anyhow::Result<Option<Value>> {
    loop {
        let msg = tokio::time::timeout(wait, ws.next())
            .await
            .map_err(|_| anyhow!("no WebSocket message within {wait:?}"))?;
        match msg {
            None | Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text)?;
                // Keepalives are skipped; a ping with a payload is a notice
                // (an access change) that tests look at.
                if (value["type"] == "ping" && value["payload"].is_null()) || value["type"] == "ka"
                {
                    continue;
                }
                return Ok(Some(value));
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err.into()),
        }
    }
}

/// Sends a `subscribe` message (graphql-transport-ws).
pub async fn ws_subscribe(
    ws: &mut Ws,
    id: &str,
    query: &str,
    variables: Value,
) -> anyhow::Result<()> {
    ws.send(Message::Text(
        json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } })
            .to_string()
            .into(),
    ))
    .await?;
    Ok(())
}

/// Polls `check` every 100 ms until it returns `Some` or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow!("condition not met within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bench-only stand-in for the oso policy that allows everything, so a
/// bench can measure an operation with the policy bypassed next to the same
/// operation asking the real one. Never wired into a server users reach.
pub struct AllowAllAuthorizer;

impl hearth_domain::ports::Authorizer for AllowAllAuthorizer {
    fn authorize(
        &self,
        _: &hearth_domain::Principal,
        _: hearth_domain::ports::Action,
        _: &hearth_domain::ports::Resource,
    ) -> Result<(), hearth_domain::ports::AuthzError> {
        Ok(())
    }
    fn authorize_system(
        &self,
        _: &hearth_domain::SystemPrincipal,
        _: hearth_domain::ports::SystemAction,
        _: &hearth_domain::ports::Resource,
    ) -> Result<(), hearth_domain::ports::AuthzError> {
        Ok(())
    }
    fn role_capabilities(&self) -> Vec<hearth_domain::ports::RoleCapabilities> {
        Vec::new()
    }
}
