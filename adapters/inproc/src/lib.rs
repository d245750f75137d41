//! hearth-inproc
