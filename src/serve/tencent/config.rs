//! The Tencent protocol's part of its `[tencent]` section: the fields that
//! can carry a bid factor (the rest is every media's, [`MediaConfig`]).
//!
//! [`MediaConfig`]: crate::serve::media::MediaConfig

use serde::{Deserialize, Serialize};

/// A Tencent `TargetInfo` field that can carry a strategy's bid factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorField {
    /// `user_weight_factor`: weighs the user's competitiveness in the media's ranking.
    UserWeightFactor,
    /// `cpc_factor`: multiplies the CPC bid.
    CpcFactor,
}
