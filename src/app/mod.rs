//! The composition root: configuration from file, environment and flags,
//! and the order in which a node restores, starts and stops.

pub mod config;
