//! rta-engine: a streaming real-time targeting (RTA) engine.
//!
//! Media and DSPs ask, per ad opportunity, which of an advertiser's audience
//! strategies a device matches; the engine answers from an in-memory
//! [`index::UserIndex`] through the [`decision`] pipeline, over gRPC and
//! HTTP ([`serve`]). Data flows one way: sources -> index -> decision -> wire.
#![warn(missing_docs)]

pub mod blacklist;
pub mod config;
pub mod decision;
pub mod experiment;
pub mod frequency;
pub mod ids;
pub mod index;
pub mod ingest;
pub mod model;
pub mod node;
pub mod population;
mod prefetch;
pub mod profile;
pub mod record;
pub mod serve;
pub mod snapshot;
pub mod strategy;
mod table_memory;
pub mod tally;
pub mod taxonomy;
pub mod telemetry;
