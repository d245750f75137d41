//! GraphQL requests the web app sends to the Hearth server: the endpoint path
//! and the JSON bodies, kept free of any renderer so they are unit-tested natively.

use serde_json::{json, Value};

/// Path of the GraphQL endpoint on the serving origin (POST, GET, WebSocket;
/// a browser GET gets GraphiQL).
pub const GRAPHQL_PATH: &str = "/graphql";

/// The login mutation. Credentials travel as variables, never spliced into the
/// query text, so a quote in a password cannot change the document.
pub const LOGIN_MUTATION: &str = "mutation Login($email: String!, $password: String!, $tenantId: ID) {\n  login(email: $email, password: $password, tenantId: $tenantId) {\n    token\n  }\n}";

/// What the login form collects. `tenant_id` is optional: the server picks the
/// user's first membership when it is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    pub tenant_id: Option<String>,
}

impl LoginRequest {
    /// The JSON body to POST to [`GRAPHQL_PATH`]. A blank tenant field is sent
    /// as no tenant rather than as an empty id the server would reject.
    pub fn to_graphql_body(&self) -> Value {
        let mut variables = json!({
            "email": self.email.trim(),
            "password": self.password,
        });
        if let Some(tenant_id) = self.tenant_id.as_deref().map(str::trim) {
            if !tenant_id.is_empty() {
                variables["tenantId"] = json!(tenant_id);
            }
        }
        json!({
            "operationName": "Login",
            "query": LOGIN_MUTATION,
            "variables": variables,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tenant_id: Option<&str>) -> LoginRequest {
        LoginRequest {
            email: " admin@acme.test ".into(),
            password: "hearth-demo".into(),
            tenant_id: tenant_id.map(Into::into),
        }
    }

    #[test]
    fn login_body_carries_credentials_as_variables() {
        let body = request(Some("acme")).to_graphql_body();

        assert_eq!(body["operationName"], "Login");
        assert_eq!(body["query"], LOGIN_MUTATION);
        assert_eq!(
            body["variables"],
            json!({ "email": "admin@acme.test", "password": "hearth-demo", "tenantId": "acme" })
        );
    }

    #[test]
    fn login_body_omits_a_missing_or_blank_tenant() {
        for tenant_id in [None, Some(""), Some("   ")] {
            let body = request(tenant_id).to_graphql_body();
            assert!(
                body["variables"].get("tenantId").is_none(),
                "tenant {tenant_id:?} should be omitted, got {body}"
            );
        }
    }

    #[test]
    fn password_is_sent_verbatim_and_never_enters_the_query_text() {
        let mut login = request(None);
        login.password = " p\"ss }{ ".into();

        let body = login.to_graphql_body();

        assert_eq!(body["variables"]["password"], " p\"ss }{ ");
        assert!(!body["query"].as_str().unwrap().contains("p\"ss"));
    }

    #[test]
    fn login_mutation_asks_for_the_token_with_the_contract_arguments() {
        for needle in [
            "login(",
            "email: $email",
            "password: $password",
            "tenantId: $tenantId",
            "token",
        ] {
            assert!(LOGIN_MUTATION.contains(needle), "missing {needle}");
        }
    }
}
