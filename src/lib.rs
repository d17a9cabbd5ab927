//! rta-engine: a streaming real-time targeting (RTA) engine.
//!
//! Media and DSPs ask, per ad opportunity, which of an advertiser's audience
//! strategies a device matches; the engine answers from an in-memory
//! [`index::UserIndex`] through the [`decision`] pipeline, over gRPC and
//! HTTP ([`serve`]). Data flows one way: sources -> index -> decision -> wire.
//!
//! The modules are layers, lowest first; each imports only those below it
//! (`tests/layers.rs` fails on an upward import, `docs/architecture.md` draws
//! the picture): [`domain`] (ids, calendar, taxonomy, limits), [`telemetry`]
//! (metric names and observable events), [`index`] (profiles, tables,
//! snapshots), [`strategy`] (the audience language and per-strategy
//! policies), [`decision`] (the pipeline and its runtime state), [`ingest`]
//! and [`demo`] (what feeds the index), [`serve`] (wire formats), [`app`]
//! (configuration and the start-up order).
#![warn(missing_docs)]

pub mod app;
pub mod decision;
pub mod demo;
pub mod domain;
pub mod index;
pub mod ingest;
pub mod serve;
pub mod strategy;
pub mod telemetry;
