//! Placeholder screen until the operator UI lands: says so, and shows
//! integrators how to log in through GraphiQL meanwhile.

use dioxus::prelude::*;

use crate::api::{LoginRequest, GRAPHQL_PATH};

#[component]
pub fn ComingSoon() -> Element {
    // The demo account from `hearth serve --demo`, so the example works as pasted.
    let example = LoginRequest {
        email: "admin@acme.test".into(),
        password: "hearth-demo".into(),
        tenant_id: None,
    };
    let example_body = serde_json::to_string_pretty(&example.to_graphql_body()).unwrap_or_default();

    rsx! {
        section { class: "coming-soon",
            h2 { "The web app is coming" }
            p {
                "Live values, setpoints, history and alarms will appear here. "
                "Until then, everything is available through the GraphQL API."
            }
            p {
                a { href: GRAPHQL_PATH, "Open GraphiQL at {GRAPHQL_PATH}" }
            }
            p { "Log in by POSTing this body to {GRAPHQL_PATH}, then send the token as "
                code { "Authorization: Bearer <token>" }
                ":"
            }
            pre { code { "{example_body}" } }
        }
    }
}
