//! GraphiQL served from the binary: the page and its vendored assets
//! (GraphiQL 3.8.3, React 18.3.1 UMD production builds, with their licences
//! in `assets/graphiql/`). Nothing is loaded from another host, so the IDE
//! works offline and a CDN outage or compromise cannot reach operators'
//! browsers, which hold tokens that can change setpoints.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Where the assets are served. The version is in the path, so the assets
/// can be cached for good: a new version is a new URL.
pub const ASSETS_PATH: &str = "/graphiql/3.8.3";

/// (file name, content type, bytes)
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react-dom.production.min.js"),
    ),
];

/// The page: React and ReactDOM first (GraphiQL's UMD build expects
/// `window.React` and `window.ReactDOM`), then GraphiQL, pointed at
/// `/graphql` on this origin for queries and for subscriptions (over the
/// same path, `ws:` or `wss:` as the page).
///
/// The schema is in the page (`sdl`): GraphiQL's introspection query nests
/// `ofType` deeper than the query limits allow anyone, so it would be
/// refused, and GraphiQL would have no completion or docs.
pub fn page(sdl: &str) -> String {
    // A JSON string is a JavaScript string literal; `<` escaped so the SDL
    // can never close the script element.
    let sdl = serde_json::Value::from(sdl)
        .to_string()
        .replace('<', "\\u003c");
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hearth GraphQL</title>
<link rel="stylesheet" href="{ASSETS_PATH}/graphiql.min.css">
<style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="{ASSETS_PATH}/react.production.min.js"></script>
<script src="{ASSETS_PATH}/react-dom.production.min.js"></script>
<script src="{ASSETS_PATH}/graphiql.min.js"></script>
<script>
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const fetcher = GraphiQL.createFetcher({{
    url: "/graphql",
    subscriptionUrl: scheme + "//" + window.location.host + "/graphql",
  }});
  const schema = GraphiQL.GraphQL.buildSchema({sdl});
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {{ fetcher: fetcher, schema: schema, defaultEditorToolsVisibility: true }})
  );
</script>
</body>
</html>
"#
    )
}

/// The page as a response; the SDL is rendered once per process.
pub fn page_response() -> Response {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    Html(PAGE.get_or_init(|| page(&crate::api::sdl())).as_str()).into_response()
}

/// `GET {ASSETS_PATH}/{file}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(&format!("{ASSETS_PATH}/{{file}}"), get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_assets_of_this_origin() {
        // Given the page with the real schema
        let page = page(&crate::api::sdl());
        // Then it names no URL of another host, and every asset it loads is served
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(!page.contains("src=\"//") && !page.contains("href=\"//"));
        for (name, _, bytes) in ASSETS {
            assert!(page.contains(&format!("{ASSETS_PATH}/{name}")), "{name}");
            assert!(bytes.len() > 1_000, "{name} is vendored");
        }
        // And a schema cannot close the page's script element
        let hostile = super::page("type Query { a: Int } # </script><script>alert(1)");
        assert!(!hostile.contains("</script><script>alert"));
    }
}
