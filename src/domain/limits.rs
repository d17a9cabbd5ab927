//! Limits the media set and every layer must agree on.

/// The bid factors the media accept (Tencent's bounds): strategy files are
/// checked against it, scores are clamped into it, answers never leave it.
pub const BID_FACTOR_RANGE: std::ops::RangeInclusive<f64> = 0.2..=5.0;
