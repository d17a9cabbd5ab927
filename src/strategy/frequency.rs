//! Frequency caps (频控): at most N exposures of a user per strategy, and
//! overall, within a window of days.
//!
//! Exposures are the media's feedback, kept as daily counts in the user's
//! profile (the feedback topic), so a cap holds across restarts and replicas
//! fed by the same topics. A cap may instead count our own answers that took
//! the traffic (`count = "decisions"`): it then holds without waiting for
//! feedback, at the price of a profile write per answer, and only on the
//! replica that answered. Windows are whole business days ending today:
//! `days = 1` is "today", `days = 7` "today and the six days before".

use serde::{Deserialize, Serialize};

use crate::index::profile::{Action, Day, ItemKey, UserProfile};

/// The most days a cap window may span (behaviour retention bounds it anyway).
pub const MAX_WINDOW_DAYS: u16 = 90;

/// A cap: at most `exposures` within the last `days` days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    /// Exposures (or answers, see `count`) allowed in the window; reaching it
    /// stops targeting.
    pub exposures: u32,
    /// Window length in days, today included.
    #[serde(default = "one_day")]
    pub days: u16,
    /// What is counted.
    #[serde(default)]
    pub count: CapCount,
}

/// What a cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CapCount {
    /// The media's exposure feedback.
    #[default]
    Exposures,
    /// Our answers that took the traffic for the strategy (any replica's
    /// feedback is not needed; each replica counts its own answers).
    Decisions,
}

impl CapCount {
    fn action(self) -> Action {
        match self {
            Self::Exposures => Action::Exposure,
            Self::Decisions => Action::Offer,
        }
    }
}

fn one_day() -> u16 {
    1
}

/// Where a user stands against a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CapState {
    /// Exposures counted in the window.
    pub exposures: u32,
    /// The cap.
    pub limit: u32,
    /// The window, days.
    pub days: u16,
}

impl CapState {
    /// Whether the cap is reached (no further exposure is wanted).
    pub fn reached(&self) -> bool {
        self.exposures >= self.limit
    }
}

impl FrequencyCap {
    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.exposures == 0 {
            return Err("`cap.exposures` must be at least 1 (disable the strategy instead)".into());
        }
        if self.days == 0 || self.days > MAX_WINDOW_DAYS {
            return Err(format!("`cap.days` must be within 1..={MAX_WINDOW_DAYS}"));
        }
        Ok(())
    }

    fn from(&self, today: Day) -> Day {
        today.saturating_sub(self.days - 1)
    }

    /// The user's exposures to one strategy (by feedback key) in the window.
    #[inline]
    pub fn strategy_state(&self, profile: &UserProfile, key: ItemKey, today: Day) -> CapState {
        CapState {
            exposures: profile.count(key, self.count.action(), self.from(today), today),
            limit: self.exposures,
            days: self.days,
        }
    }

    /// The user's exposures to any strategy (or our answers, one per
    /// request taken) in the window.
    pub fn user_state(&self, profile: &UserProfile, today: Day) -> CapState {
        let from = self.from(today);
        CapState {
            exposures: match self.count {
                CapCount::Exposures => profile.feedback_total(Action::Exposure, from, today),
                CapCount::Decisions => {
                    profile.count(ItemKey::answers(), Action::Offer, from, today)
                }
            },
            limit: self.exposures,
            days: self.days,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::profile::{BehaviourCount, ProfileBuilder, Scope};

    fn profile(records: &[(ItemKey, Action, Day, u16)]) -> UserProfile {
        let mut b = ProfileBuilder::default();
        for &(item, action, day, count) in records {
            b.behaviour.push(BehaviourCount {
                item,
                action,
                day,
                count,
            });
        }
        b.build().unwrap()
    }

    #[test]
    fn a_cap_counts_only_its_strategy_its_window_and_exposures() {
        let s = ItemKey::strategy("s1");
        let other = ItemKey::strategy("s2");
        let cat = ItemKey::new(Scope::Category, 7).unwrap();
        let p = profile(&[
            (s, Action::Exposure, 100, 2),
            (s, Action::Exposure, 98, 5),
            (s, Action::Click, 100, 9),
            (other, Action::Exposure, 100, 4),
            (cat, Action::Browse, 100, 30),
        ]);
        let today = FrequencyCap {
            exposures: 3,
            days: 1,
            count: CapCount::Exposures,
        };
        let st = today.strategy_state(&p, s, 100);
        assert_eq!(st.exposures, 2);
        assert!(!st.reached());
        let three_days = FrequencyCap {
            exposures: 7,
            days: 3,
            count: CapCount::Exposures,
        };
        let st = three_days.strategy_state(&p, s, 100);
        assert_eq!(st.exposures, 7);
        assert!(st.reached());
        // the day before the window does not count
        assert_eq!(three_days.strategy_state(&p, s, 101).exposures, 2);
        // overall: both strategies' exposures, not clicks or on-site behaviour
        assert_eq!(today.user_state(&p, 100).exposures, 6);
        assert_eq!(three_days.user_state(&p, 100).exposures, 11);
    }

    #[test]
    fn bad_caps_are_rejected() {
        let cap = |exposures, days| FrequencyCap {
            exposures,
            days,
            count: CapCount::Exposures,
        };
        assert!(cap(0, 1).validate().is_err());
        assert!(cap(1, 0).validate().is_err());
        assert!(cap(1, 91).validate().is_err());
        assert!(cap(1, 90).validate().is_ok());
    }

    #[test]
    fn a_decisions_cap_counts_our_answers_not_exposures() {
        let s = ItemKey::strategy("s1");
        let p = profile(&[
            (s, Action::Exposure, 100, 9),
            (s, Action::Offer, 100, 2),
            (ItemKey::answers(), Action::Offer, 100, 1),
        ]);
        let cap = FrequencyCap {
            exposures: 3,
            days: 1,
            count: CapCount::Decisions,
        };
        assert_eq!(cap.strategy_state(&p, s, 100).exposures, 2);
        // overall: answers, one per request taken, not one per strategy
        assert_eq!(cap.user_state(&p, 100).exposures, 1);
    }
}
