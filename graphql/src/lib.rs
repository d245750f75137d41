//! `hearth`: the composition root. Config decides which adapter serves each
//! port; the GraphQL API is the driving adapter.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod export;
pub mod graphiql;
pub mod http_media;
pub mod http_request;
pub mod limits;
pub mod readiness;
pub mod server;
pub mod signals;
pub mod ws;
