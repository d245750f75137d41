//! Hearth web app (Dioxus 0.7). For now a placeholder page that names the
//! product and points operators and integrators at the GraphQL API; the real
//! screens will talk to `/graphql` through [`api`].

pub mod api;
mod components;

pub use components::App;

/// Mounts [`App`] in the browser. Only exists on `wasm32`: natively there is no
/// renderer, so the crate just type-checks and tests.
#[cfg(target_arch = "wasm32")]
pub fn launch() {
    dioxus::launch(App);
}
