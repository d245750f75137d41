//! GraphQL types of a point that both the device view (`devices`) and the
//! profile documents (`profiles`) show, kept here so neither module needs
//! the other.

use async_graphql::{Enum, InputObject, SimpleObject};

// Role level needed to write a point (no doc comment: it would enter the schema).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "hearth_domain::model::WriteLevel")]
pub enum WriteLevel {
    Basic,
    Limited,
    Full,
}

// A named value of an enumerated point (a mode).
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "PointOptionInput")]
pub struct PointOption {
    pub value: f64,
    pub label: String,
}
