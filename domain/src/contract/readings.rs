//! Contract suite for the `readings` port (placeholder until written).
