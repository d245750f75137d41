//! Contract suite for the `directory` port (placeholder until written).
