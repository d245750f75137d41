//! hearth-auth
