//! Shared by the engine tests: generated event sets and definitions, and the brute-force
//! references.
#![allow(dead_code)]

pub mod generate;
pub mod reference;
