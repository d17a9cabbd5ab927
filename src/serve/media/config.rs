//! A media endpoint's configuration section (`[tencent]`, `[oceanengine]`,
//! `[meituan]`): the settings every media endpoint has, and the bid-factor
//! fields of its own protocol.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::field::FieldError;
use crate::strategy::BID_FACTOR_RANGE;

/// What a media's protocol contributes to its configuration section.
pub trait MediaFields:
    Copy + Eq + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The section's name, also the media's `api` metric label.
    const SECTION: &'static str;
    /// Where the endpoint is served on the media listener by default.
    const PATH: &'static str;
    /// The longest cache time the media honours, seconds.
    const MAX_CACHE_SECONDS: u32;
    /// The fields that carry a strategy's bid factor by default.
    fn default_fields() -> Vec<Self>;
}

/// Seven days: the longest cache time Tencent and Ocean Engine honour.
pub const SEVEN_DAYS: u32 = 7 * 24 * 3600;

/// One media endpoint, `POST <path>` on the media listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    default,
    bound(deserialize = "F: MediaFields", serialize = "F: MediaFields")
)]
pub struct MediaConfig<F: MediaFields> {
    /// Serve the endpoint at all.
    pub enabled: bool,
    /// The path it is served at.
    pub path: String,
    /// Largest request body accepted, bytes; larger bodies get HTTP 413.
    pub max_body_bytes: usize,
    /// Server-side budget per request, ms, counted from when the request reaches the
    /// endpoint. A request still unanswered after it (a slow body, a queue) gets
    /// `default_answer` instead. The media's own deadline (Tencent: 60 ms) covers
    /// the network and the advertiser's load balancer too.
    pub deadline_ms: u64,
    /// Requests decided concurrently; one more is shed at once with `default_answer`.
    pub max_in_flight: usize,
    /// What to answer when a request is shed or runs out of time: `fail_closed`
    /// (refuse the traffic) or `fail_open` (take it without naming strategies).
    pub default_answer: FailMode,
    /// Least cache time sent, seconds (a decision that must not be cached, e.g.
    /// for placeholder ids, still sends none).
    pub min_cache_seconds: u32,
    /// Most cache time sent, seconds.
    pub max_cache_seconds: u32,
    /// Which of the protocol's fields carry a strategy's bid factor; empty = none.
    pub bid_factor_fields: Vec<F>,
    /// Least bid factor sent; lower ones are raised to it.
    pub min_bid_factor: f64,
    /// Most bid factor sent; higher ones are cut to it.
    pub max_bid_factor: f64,
}

/// What a media endpoint answers when it cannot decide in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Take the traffic without restricting it to strategies.
    FailOpen,
    /// Refuse the traffic.
    FailClosed,
}

impl<F: MediaFields> Default for MediaConfig<F> {
    fn default() -> Self {
        Self {
            enabled: true,
            path: F::PATH.to_string(),
            max_body_bytes: 64 * 1024,
            deadline_ms: 20,
            max_in_flight: 1024,
            default_answer: FailMode::FailClosed,
            min_cache_seconds: 0,
            max_cache_seconds: F::MAX_CACHE_SECONDS,
            bid_factor_fields: F::default_fields(),
            min_bid_factor: *BID_FACTOR_RANGE.start(),
            max_bid_factor: *BID_FACTOR_RANGE.end(),
        }
    }
}

impl<F: MediaFields> MediaConfig<F> {
    /// Checks ranges; errors name the field as `<section>.<key>`.
    pub fn validate(&self) -> Result<(), FieldError> {
        let key = |k: &str| format!("{}.{k}", F::SECTION);
        let valid_path = self.path.starts_with('/')
            && self.path.len() <= 128
            && !matches!(self.path.as_str(), "/healthz" | "/readyz")
            && self
                .path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b));
        if !valid_path {
            return Err(FieldError::new(
                key("path"),
                "must start with `/`, be at most 128 characters of [A-Za-z0-9/_.-] and not be /healthz or /readyz",
            ));
        }
        if !(512..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(FieldError::new(
                key("max_body_bytes"),
                "must be 512..=16777216",
            ));
        }
        if !(1..=60_000).contains(&self.deadline_ms) {
            return Err(FieldError::new(key("deadline_ms"), "must be 1..=60000"));
        }
        if !(1..=1_000_000).contains(&self.max_in_flight) {
            return Err(FieldError::new(key("max_in_flight"), "must be 1..=1000000"));
        }
        if self.max_cache_seconds > F::MAX_CACHE_SECONDS {
            let why = if F::MAX_CACHE_SECONDS == 0 {
                " (the protocol carries no cache time)"
            } else {
                ""
            };
            return Err(FieldError::new(
                key("max_cache_seconds"),
                format!("must be at most {}{why}", F::MAX_CACHE_SECONDS),
            ));
        }
        if self.min_cache_seconds > self.max_cache_seconds {
            return Err(FieldError::new(
                key("min_cache_seconds"),
                format!("must not exceed {}", key("max_cache_seconds")),
            ));
        }
        let fields = &self.bid_factor_fields;
        if fields
            .iter()
            .enumerate()
            .any(|(i, f)| fields[..i].contains(f))
        {
            return Err(FieldError::new(
                key("bid_factor_fields"),
                "lists a field twice",
            ));
        }
        let range = BID_FACTOR_RANGE;
        if !(range.contains(&self.min_bid_factor)
            && range.contains(&self.max_bid_factor)
            && self.min_bid_factor <= self.max_bid_factor)
        {
            return Err(FieldError::new(
                key("min_bid_factor"),
                format!(
                    "min_bid_factor and max_bid_factor must lie in {}..={} with min <= max",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(())
    }
}
