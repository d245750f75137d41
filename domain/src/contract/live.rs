//! Contract suite for the `live` port (placeholder until written).
