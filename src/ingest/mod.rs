//! Ingestion: event streams -> validated [`event::Event`]s -> [`apply`] to the
//! `UserIndex`. Data enters the index only through here.
//!
//! Sources ([`kafka`]) decode each message with [`event::decode`]; an event
//! that does not decode or validate is a counted, logged skip with a
//! dead-letter record ([`dead_letter`]), never a stalled consumer.

pub mod apply;
pub mod dead_letter;
pub mod event;
pub mod json;
pub mod kafka;

/// Generated types of `rta.events.v1` (the topic schemas).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("rta.events.v1");
}
