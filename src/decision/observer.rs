//! What the decision layer takes from ingestion: media feedback (for the
//! calibration ledger and the anti-cheat rules) and blacklist commands. The
//! trait is the decision layer's, so ingestion depends on decision and not
//! the other way round; ingestion calls it after the event was applied to
//! the index.

use crate::decision::blacklist::{Listed, Reason};
use crate::domain::ids::{DeviceKey, UserId};
use crate::index::profile::{Action, ItemKey};

/// Who a feedback event is about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subject {
    /// A known user id.
    User(UserId),
    /// A device, resolved through the index.
    Device(DeviceKey),
}

/// Media feedback on a strategy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeedbackEvent {
    /// About whom.
    pub subject: Subject,
    /// Event time, Unix ms.
    pub time_ms: i64,
    /// Exposure, click or conversion.
    pub action: Action,
    /// The strategy's feedback key.
    pub strategy: ItemKey,
}

/// A change of the anti-cheat blacklist (not of the index).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ControlEvent {
    /// List a device or user.
    List {
        /// Who.
        listed: Listed,
        /// Why.
        reason: Reason,
        /// When it was decided, Unix ms (the TTL runs from here).
        time_ms: i64,
        /// How long; `None`: the engine's configured TTL.
        ttl_seconds: Option<u64>,
    },
    /// Remove an entry.
    Unlist {
        /// Who.
        listed: Listed,
    },
}

/// What besides the index consumes applied events: the decision layer's
/// feedback loop (calibration, anti-cheat rules) and its blacklist. Called on
/// the ingest thread after the event was applied to the index.
pub trait EventObserver: Send + Sync {
    /// Sees one applied feedback event.
    fn on_feedback(&self, event: &FeedbackEvent);
    /// Sees one applied blacklist command.
    fn on_control(&self, event: &ControlEvent);
}
