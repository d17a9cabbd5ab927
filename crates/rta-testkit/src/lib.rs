//! Test and benchmark support for rta-engine, kept out of the server: the
//! engine dev-depends on it, the load programs depend on it, and the shipped
//! binary links none of it.
//!
//! [`generate`] writes random but realistic strategy files from a seed, for
//! benchmarks at 10 to 100,000 strategies and for property tests of the
//! indexed matcher against the linear scan (`tests/indexed_matcher.rs`);
//! `tests/audience_props.rs` property-tests the audience language on text no
//! generator writes.
#![warn(missing_docs)]

pub mod generate;
