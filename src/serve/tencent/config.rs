//! The Tencent endpoint's configuration section, `[tencent]`.

use serde::Deserialize;

use crate::domain::field::FieldError;

/// The Tencent RTA media endpoint, `POST /rta/tencent` on `server.http_addr`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TencentConfig {
    /// Serve the endpoint at all.
    pub enabled: bool,
    /// Largest request body accepted, bytes; larger bodies get HTTP 413.
    pub max_body_bytes: usize,
    /// Server-side budget per request, ms, counted from when the request reaches the
    /// endpoint. A request still unanswered after it (a slow body, a queue) gets
    /// `default_answer` instead. Tencent's 60 ms covers network and the advertiser's
    /// load balancer too.
    pub deadline_ms: u64,
    /// Requests decided concurrently; one more is shed at once with `default_answer`.
    pub max_in_flight: usize,
    /// What to answer when a request is shed or runs out of time: `fail_closed`
    /// (code 2: refuse the traffic) or `fail_open` (code 0 without strategy ids: the
    /// media treats all of the advertiser's ads as eligible).
    pub default_answer: FailMode,
    /// Least `response_cache_time` sent, seconds (a decision that must not be cached,
    /// e.g. for placeholder ids, still sends none).
    pub min_cache_seconds: u32,
    /// Most `response_cache_time` sent, seconds; Tencent honours up to 7 days.
    pub max_cache_seconds: u32,
    /// Which `target_infos` fields carry a strategy's bid factor:
    /// `user_weight_factor` and/or `cpc_factor` (both multipliers, 1.0 neutral,
    /// clamped to the media's 0.2 ..= 5). Empty = send neither.
    pub bid_factor_fields: Vec<FactorField>,
}

/// What the Tencent endpoint answers when it cannot decide in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Take the traffic without restricting it to strategies (code 0).
    FailOpen,
    /// Refuse the traffic (a non-zero code).
    FailClosed,
}

/// A Tencent `TargetInfo` field that can carry a strategy's bid factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorField {
    /// `user_weight_factor`: weighs the user's competitiveness in the media's ranking.
    UserWeightFactor,
    /// `cpc_factor`: multiplies the CPC bid.
    CpcFactor,
}

/// Tencent's ceiling for `response_cache_time`: 7 days.
pub const TENCENT_MAX_CACHE_SECONDS: u32 = 7 * 24 * 3600;

impl Default for TencentConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_body_bytes: 64 * 1024,
            deadline_ms: 20,
            max_in_flight: 1024,
            default_answer: FailMode::FailClosed,
            min_cache_seconds: 0,
            max_cache_seconds: TENCENT_MAX_CACHE_SECONDS,
            bid_factor_fields: vec![FactorField::UserWeightFactor],
        }
    }
}

impl TencentConfig {
    /// Checks ranges; errors name the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(512..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(FieldError::new(
                "tencent.max_body_bytes",
                "must be 512..=16777216",
            ));
        }
        if !(1..=60_000).contains(&self.deadline_ms) {
            return Err(FieldError::new("tencent.deadline_ms", "must be 1..=60000"));
        }
        if !(1..=1_000_000).contains(&self.max_in_flight) {
            return Err(FieldError::new(
                "tencent.max_in_flight",
                "must be 1..=1000000",
            ));
        }
        if self.max_cache_seconds > TENCENT_MAX_CACHE_SECONDS {
            return Err(FieldError::new(
                "tencent.max_cache_seconds",
                format!("must be at most {TENCENT_MAX_CACHE_SECONDS} (7 days)"),
            ));
        }
        if self.min_cache_seconds > self.max_cache_seconds {
            return Err(FieldError::new(
                "tencent.min_cache_seconds",
                "must not exceed tencent.max_cache_seconds",
            ));
        }
        let mut fields = self.bid_factor_fields.clone();
        fields.sort_by_key(|f| *f as u8);
        fields.dedup();
        if fields.len() != self.bid_factor_fields.len() {
            return Err(FieldError::new(
                "tencent.bid_factor_fields",
                "lists a field twice",
            ));
        }
        Ok(())
    }
}
