//! hearth-embedded
