//! hearth-ui
