//! Label values that metrics and answers share, as enums: a caller names an
//! outcome or a reason by its variant, and its label is written in one place.

use serde::Serialize;

/// How a decision ended: the `outcome` label of `rta_decide_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// At least one strategy matched.
    Take,
    /// A known user matched no strategy.
    NoMatch,
    /// No id resolved to a known user.
    UnknownDevice,
    /// Every id was doubtful or none was given.
    NoUsableId,
    /// A device or the user is on the anti-cheat blacklist.
    Blacklisted,
    /// The user reached the overall frequency cap.
    Capped,
    /// Not decided: more requests were in flight than allowed; the configured
    /// default answer was sent at once.
    Shed,
    /// Not decided: the request's deadline passed first; the configured
    /// default answer was sent.
    Deadline,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 8] = [
        Outcome::Take,
        Outcome::NoMatch,
        Outcome::UnknownDevice,
        Outcome::NoUsableId,
        Outcome::Blacklisted,
        Outcome::Capped,
        Outcome::Shed,
        Outcome::Deadline,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Take => "take",
            Outcome::NoMatch => "no_match",
            Outcome::UnknownDevice => "unknown_device",
            Outcome::NoUsableId => "no_usable_id",
            Outcome::Blacklisted => "blacklisted",
            Outcome::Capped => "capped",
            Outcome::Shed => "shed",
            Outcome::Deadline => "deadline",
        }
    }
}

/// Why a strategy whose audience matched was not taken: the `reason` label
/// of `rta_strategy_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The user's exposures to the strategy reached its cap.
    Cap = 0,
    /// The model's score is below the strategy's threshold.
    Score = 1,
    /// The user has no vector of the model and the strategy's fallback refuses.
    NoVector = 2,
    /// The user is in the strategy's experiment holdout.
    Holdout = 3,
}

impl Refusal {
    /// Every refusal, in counter order (`Refusal as usize` indexes it).
    pub const ALL: [Refusal; 4] = [
        Refusal::Cap,
        Refusal::Score,
        Refusal::NoVector,
        Refusal::Holdout,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Cap => "cap",
            Refusal::Score => "score",
            Refusal::NoVector => "no_vector",
            Refusal::Holdout => "holdout",
        }
    }
}

/// Why a media protocol dropped a device id before deciding: the `reason`
/// label of `rta_ignored_device_ids_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoredId {
    /// Present but not 32 hexadecimal characters.
    Malformed,
    /// Listed by the media as doubtful (Tencent `doubtful_ids_list`).
    FlaggedDoubtful,
    /// Beyond the number of ids of one kind the engine looks at.
    TooMany,
}

impl IgnoredId {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            IgnoredId::Malformed => "malformed",
            IgnoredId::FlaggedDoubtful => "flagged_doubtful",
            IgnoredId::TooMany => "too_many",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_what_answers_serialise_to() {
        for o in Outcome::ALL {
            let json = serde_json::to_string(&o).expect("an outcome serialises");
            assert_eq!(json, format!("\"{}\"", o.label()));
        }
        for (i, r) in Refusal::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i, "ALL is in counter order");
            let json = serde_json::to_string(&r).expect("a refusal serialises");
            assert_eq!(json, format!("\"{}\"", r.label()));
        }
    }
}
