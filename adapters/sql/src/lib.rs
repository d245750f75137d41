//! hearth-sql
