//! Placeholder until the login storm bench lands.
fn main() {}
