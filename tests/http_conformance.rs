//! `/graphql` against the GraphQL-over-HTTP spec: response types by
//! `Accept`, request errors as 400s without `data` under the spec's own
//! type, JSON-only POST bodies, no mutations over GET; and GraphiQL served
//! from the binary, or not at all when switched off.

use hearth::server::HttpOptions;
use hearth_tests::start_with_http;
use reqwest::header::{ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SPEC_TYPE: &str = "application/graphql-response+json";

struct Server {
    running: hearth::app::Running,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Server {
    async fn start(http: HttpOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let running = start_with_http(dir.path(), http).await?;
        Ok(Self {
            running,
            _dir: dir,
            http: reqwest::Client::new(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.address)
    }

    async fn post(&self, accept: Option<&str>, body: Value) -> anyhow::Result<reqwest::Response> {
        let mut req = self.http.post(self.url("/graphql")).json(&body);
        if let Some(accept) = accept {
            req = req.header(ACCEPT, accept);
        }
        Ok(req.send().await?)
    }
}

fn content_type(res: &reqwest::Response) -> String {
    res.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_response_type_follows_accept() -> anyhow::Result<()> {
    // Given a server
    let server = Server::start(HttpOptions::default()).await?;
    let query = json!({ "query": "{ __typename }" });
    // When a client accepts application/json, or sends no preference
    for accept in [Some("application/json"), None] {
        let res = server.post(accept, query.clone()).await?;
        // Then it gets 200 and application/json
        assert_eq!(res.status(), StatusCode::OK, "{accept:?}");
        assert_eq!(content_type(&res), "application/json", "{accept:?}");
        let body: Value = res.json().await?;
        assert_eq!(body["data"]["__typename"], "Query");
    }
    // When it asks for the spec's type
    let res = server.post(Some(SPEC_TYPE), query.clone()).await?;
    // Then it gets that type
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(content_type(&res), SPEC_TYPE);
    // And a client accepting neither gets 406
    let res = server.post(Some("text/plain"), query).await?;
    assert_eq!(res.status(), StatusCode::NOT_ACCEPTABLE);
    server.running.stop().await;
    Ok(())
}

#[tokio::test]
async fn request_errors_are_400_without_data_under_the_spec_type() -> anyhow::Result<()> {
    // Given a server and documents that fail to parse and to validate
    let server = Server::start(HttpOptions::default()).await?;
    for document in ["{ devices { ", "{ nope }"] {
        let body = json!({ "query": document });
        // When they are sent accepting the spec's type
        let res = server.post(Some(SPEC_TYPE), body.clone()).await?;
        // Then they are 400s whose body has errors and no data entry
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{document}");
        assert_eq!(content_type(&res), SPEC_TYPE);
        let json: Value = res.json().await?;
        assert!(json.get("data").is_none(), "{document}: {json}");
        assert_eq!(json["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
        // And under application/json they stay 200s, as legacy clients expect
        let res = server.post(Some("application/json"), body).await?;
        assert_eq!(res.status(), StatusCode::OK, "{document}");
    }
    // And a field error (no token for `me`) is no request error: 200 with data
    let res = server
        .post(Some(SPEC_TYPE), json!({ "query": "{ me { role } }" }))
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let json: Value = res.json().await?;
    assert!(json.get("data").is_some(), "{json}");
    assert_eq!(json["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    server.running.stop().await;
    Ok(())
}

#[tokio::test]
async fn post_bodies_must_be_json() -> anyhow::Result<()> {
    // Given a server
    let server = Server::start(HttpOptions::default()).await?;
    let body = r#"{"query":"{ __typename }"}"#;
    // When a GraphQL body is posted as form data, as text, and without a type
    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        None,
    ] {
        let mut req = server.http.post(server.url("/graphql")).body(body);
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        let res = req.send().await?;
        // Then it is refused with 415 and a coded error
        assert_eq!(
            res.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        let json: Value = res.json().await?;
        assert_eq!(json["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    }
    // And JSON with a charset is read
    let res = server
        .http
        .post(server.url("/graphql"))
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(body)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    server.running.stop().await;
    Ok(())
}

#[tokio::test]
async fn mutations_are_refused_over_get() -> anyhow::Result<()> {
    // Given a server
    let server = Server::start(HttpOptions::default()).await?;
    // When a mutation is sent in the URL (alone, and picked by name among others)
    let alone = "mutation { switchTenant(tenantId: \"acme\") { token } }";
    let named = "query Q { __typename } mutation M { switchTenant(tenantId: \"acme\") { token } }";
    for (document, operation) in [(alone, None), (named, Some("M"))] {
        let mut req = server
            .http
            .get(server.url("/graphql"))
            .query(&[("query", document)]);
        if let Some(name) = operation {
            req = req.query(&[("operationName", name)]);
        }
        let res = req.send().await?;
        // Then it is refused with 405 and Allow: POST, without running
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{document}");
        assert_eq!(
            res.headers().get(ALLOW).and_then(|v| v.to_str().ok()),
            Some("POST")
        );
    }
    // And a query of the same document, picked by name, runs over GET
    let res = server
        .http
        .get(server.url("/graphql"))
        .query(&[("query", named), ("operationName", "Q")])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let json: Value = res.json().await?;
    assert_eq!(json["data"]["__typename"], "Query");
    server.running.stop().await;
    Ok(())
}

#[tokio::test]
async fn graphiql_is_served_from_the_binary() -> anyhow::Result<()> {
    // Given a server with GraphiQL on (the default)
    let server = Server::start(HttpOptions::default()).await?;
    // When a browser opens /graphql
    let page = server
        .http
        .get(server.url("/graphql"))
        .header(ACCEPT, "text/html")
        .send()
        .await?
        .text()
        .await?;
    // Then the page names no other host: every script and stylesheet is ours
    assert!(page.contains("GraphiQL.createFetcher"), "{page}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    let assets: Vec<&str> = page
        .split(['"', '\''])
        .filter(|s| s.starts_with(hearth::graphiql::ASSETS_PATH))
        .collect();
    assert_eq!(assets.len(), 4, "{assets:?}");
    // And each asset is served, cacheable for good
    for asset in assets {
        let res = server.http.get(server.url(asset)).send().await?;
        assert_eq!(res.status(), StatusCode::OK, "{asset}");
        let cache = res
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(cache.contains("immutable"), "{asset}: {cache}");
        assert!(res.bytes().await?.len() > 1_000, "{asset}");
    }
    server.running.stop().await;
    Ok(())
}

#[tokio::test]
async fn graphiql_can_be_switched_off() -> anyhow::Result<()> {
    // Given a server with GraphiQL off
    let server = Server::start(HttpOptions {
        graphiql: false,
        ..HttpOptions::default()
    })
    .await?;
    // When a browser opens /graphql
    let res = server
        .http
        .get(server.url("/graphql"))
        .header(ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await?;
    // Then it gets a coded JSON error (there is no query), not the IDE
    assert_eq!(content_type(&res), "application/json");
    let body = res.text().await?;
    assert!(!body.contains("GraphiQL"), "{body}");
    let json: Value = serde_json::from_str(&body)?;
    assert_eq!(json["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // And the assets are not served
    let res = server
        .http
        .get(server.url(&format!(
            "{}/graphiql.min.js",
            hearth::graphiql::ASSETS_PATH
        )))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    server.running.stop().await;
    Ok(())
}

#[tokio::test]
async fn browsers_may_call_only_from_configured_origins() -> anyhow::Result<()> {
    // Given a server that allows one origin
    let server = Server::start(HttpOptions {
        cors_origins: vec!["https://ops.example.com".into()],
        ..HttpOptions::default()
    })
    .await?;
    let preflight = |origin: &'static str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    // When a browser asks from that origin and from another
    let allowed = preflight("https://ops.example.com").await?;
    let other = preflight("https://evil.example.net").await?;
    // Then only the configured origin is allowed
    let allow_origin = |res: &reqwest::Response| {
        res.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        allow_origin(&allowed).as_deref(),
        Some("https://ops.example.com")
    );
    assert_eq!(allow_origin(&other), None);
    server.running.stop().await;
    Ok(())
}
