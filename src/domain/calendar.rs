//! The business calendar: whole days in the advertiser's time zone, which
//! behaviour windows, frequency caps and TTLs count in, and where "now" comes
//! from.

use std::time::{SystemTime, UNIX_EPOCH};

/// A calendar day in the engine's business time zone, counted from 2020-01-01.
pub type Day = u16;

/// Unix day number of 2020-01-01, day 0 of [`Day`].
pub const EPOCH_UNIX_DAY: i64 = 18_262;

/// The [`Day`] of a Unix time, for a time zone `tz_offset_secs` east of UTC.
pub fn day_of(unix_secs: i64, tz_offset_secs: i32) -> Day {
    let d = (unix_secs + i64::from(tz_offset_secs)).div_euclid(86_400) - EPOCH_UNIX_DAY;
    d.clamp(0, i64::from(Day::MAX)) as Day
}

/// Where "today" comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock, in a business time zone `tz_offset_secs` east of UTC.
    System {
        /// Offset of the business time zone from UTC, in seconds (UTC+8: 28800).
        tz_offset_secs: i32,
    },
    /// A fixed day, for tests and replays (its noon, UTC, is "now").
    Fixed(Day),
}

impl Clock {
    /// Today in the business time zone.
    pub fn today(&self) -> Day {
        match self {
            Self::System { tz_offset_secs } => day_of(self.now_ms() / 1000, *tz_offset_secs),
            Self::Fixed(d) => *d,
        }
    }

    /// Now, Unix ms (for blacklist TTLs and request rates).
    pub fn now_ms(&self) -> i64 {
        match self {
            Self::System { .. } => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            Self::Fixed(d) => (EPOCH_UNIX_DAY + i64::from(*d)) * 86_400_000 + 43_200_000,
        }
    }
}
