//! Contract suite for the `documents` port (placeholder until written).
