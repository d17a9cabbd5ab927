//! The feedback loop's decision side: media feedback feeds the calibration
//! ledger and the click-fraud rule, blacklist commands edit the blacklist,
//! and media-flagged doubtful ids are listed when the rule is on.

use std::time::Duration;

use crate::decision::DecisionEngine;
use crate::decision::blacklist::{Listed, Reason};
use crate::decision::ledger::{Outcome, Scored};
use crate::decision::observer::{ControlEvent, EventObserver, FeedbackEvent, Subject};
use crate::domain::ids::DeviceKey;
use crate::index::profile::Action;

impl DecisionEngine {
    /// The doubtful-id rule: ids a media flagged as doubtful are listed (when
    /// `blacklist.list_flagged_doubtful_ids` is on), so that a request that
    /// presents one of them as a clean id, from any media, is refused.
    pub fn flag_doubtful_ids(&self, keys: &[DeviceKey]) {
        if !self.blacklist.config().list_flagged_doubtful_ids {
            return;
        }
        let now = self.clock.now_ms();
        for k in keys.iter().filter(|k| !k.is_doubtful()) {
            if self.blacklist.get(Listed::Device(*k), now).is_some() {
                continue;
            }
            match self
                .blacklist
                .flag(Listed::Device(*k), Reason::DoubtfulId, now)
            {
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "blacklist full; doubtful id not listed"),
            }
        }
    }

    /// Feeds one media feedback event (already applied to the index) to the
    /// calibration ledger and the click-fraud rule.
    fn observe_feedback(
        &self,
        subject: Subject,
        action: Action,
        strategy: crate::index::profile::ItemKey,
        time_ms: i64,
    ) {
        let outcome = match action {
            Action::Exposure => Outcome::Exposure,
            Action::Click => Outcome::Click,
            Action::Conversion => Outcome::Conversion,
            _ => return,
        };
        let user = match subject {
            Subject::User(u) => Some(u),
            Subject::Device(d) => self.index.resolve(&[d]),
        };
        let live = self.live.load();
        let set = &live.set;
        let scored = set
            .index_of_feedback_key(strategy)
            .and_then(|i| Some((i as usize, set.strategies().get(i as usize)?)))
            .and_then(|(i, s)| Some((i, s.score.as_ref()?, set.model.as_ref()?)));
        let rule = self.blacklist.config().max_clicks_without_conversion;
        let today = self.clock.today();
        let mut flag = false;
        let mut scored_by = None;
        let mut group = None;
        if let Some(u) = user {
            self.index.with_profile(u, |p| {
                if let Some((system, _)) = self.groups.get() {
                    // tags are sorted, a system's are contiguous: its first one
                    let tags = p.tags();
                    let at = tags.partition_point(|t| (t >> 24) < *system);
                    group = tags.get(at).copied().filter(|t| (t >> 24) == *system);
                }
                if let Some((i, score, model)) = scored
                    && let Some(v) = p.vector().filter(|v| model.produced(v))
                {
                    let l = score.logits(&v);
                    let shift = live.shifts.load().get(i).copied().unwrap_or_default();
                    let (logit, shift) = match outcome {
                        Outcome::Exposure => (l.ctr, shift.ctr),
                        _ => (l.cvr, shift.cvr),
                    };
                    scored_by = Some(Scored {
                        logit: logit.map(f64::from),
                        served: logit
                            .map(|x| crate::strategy::score::sigmoid(f64::from(x) + shift)),
                    });
                }
                if outcome == Outcome::Click && rule > 0 {
                    let clicks = p.feedback_total(Action::Click, today, today);
                    let conversions = p.feedback_total(Action::Conversion, today, today);
                    flag = clicks > rule && conversions == 0;
                }
            });
        }
        // only live strategies get a ledger entry: feedback naming arbitrary
        // strategy ids must not grow it without bound
        if set.index_of_feedback_key(strategy).is_some() {
            self.ledger
                .record(strategy, group, outcome, scored_by, time_ms);
        }
        if flag
            && let Some(u) = user
            && self
                .blacklist
                .get(Listed::User(u), self.clock.now_ms())
                .is_none()
        {
            match self.blacklist.flag(
                Listed::User(u),
                Reason::ClicksWithoutConversion,
                self.clock.now_ms(),
            ) {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "blacklist full; click-fraud rule hit not listed")
                }
            }
        }
    }

    fn observe_control(&self, c: &ControlEvent) {
        let now = self.clock.now_ms();
        match *c {
            ControlEvent::List {
                listed,
                reason,
                time_ms,
                ttl_seconds,
            } => {
                if reason == Reason::MediaFraud && !self.blacklist.config().media_fraud {
                    return;
                }
                let ttl = ttl_seconds.map(Duration::from_secs);
                let ttl_ms = ttl.map_or(self.blacklist.config().ttl_seconds as i64 * 1000, |t| {
                    t.as_millis() as i64
                });
                // replayed from the topic's start: an entry already expired stays out
                if time_ms.saturating_add(ttl_ms) <= now {
                    return;
                }
                match self.blacklist.add(listed, reason, time_ms.min(now), ttl) {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "blacklist full; control event not applied")
                    }
                }
            }
            ControlEvent::Unlist { listed } => {
                self.blacklist.remove(listed);
            }
        }
    }
}

impl EventObserver for DecisionEngine {
    fn on_feedback(&self, f: &FeedbackEvent) {
        self.observe_feedback(f.subject, f.action, f.strategy, f.time_ms);
    }

    fn on_control(&self, c: &ControlEvent) {
        self.observe_control(c);
    }
}
