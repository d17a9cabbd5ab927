//! "Why did this device match, or not?": the decision plus, per strategy, the
//! first clause that failed and what each settling step said. Not counted.

use crate::decision::blacklist::Reason;
use crate::domain::ids::UserId;
use crate::index::profile::UserProfile;
use crate::strategy::EvalContext;
use serde::Serialize;

use crate::decision::{Decision, DecisionEngine, DecisionRequest};
use crate::strategy::frequency::CapState;
use crate::strategy::score::Prediction;
use crate::telemetry::Refusal;

/// Per strategy: matched, or the first clause that failed, and what the
/// settling steps said.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Strategy id.
    pub strategy_id: String,
    /// Whether it was taken.
    pub matched: bool,
    /// The first clause the user failed, as written.
    pub failed_clause: Option<String>,
    /// The audience matched but a later step refused ([`Refusal`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// The user against the strategy's frequency cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<CapState>,
    /// The model's calibrated prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<Prediction>,
    /// The strategy is scored but the user has no vector of the model.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub missing_vector: bool,
    /// The experiment arm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    /// The bid factor it would be taken at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_factor: Option<f64>,
}

/// Why a device matched or did not match each strategy.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The user the ids resolved to.
    pub user_id: Option<UserId>,
    /// How many of the given ids were doubtful and ignored.
    pub doubtful_ids: usize,
    /// The strategy set's version.
    pub strategy_version: String,
    /// Why the request is refused outright, if it is blacklisted.
    pub blacklisted: Option<Reason>,
    /// The user against the overall frequency cap, if one is configured.
    pub user_cap: Option<CapState>,
    /// The user's vector: its dimensions, and whether it is of the live model.
    pub vector: Option<VectorInfo>,
    /// The decision itself.
    pub decision: Decision,
    /// One verdict per live strategy.
    pub verdicts: Vec<Verdict>,
}

/// A user's vector, as `explain` shows it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VectorInfo {
    /// Dimensions.
    pub dims: usize,
    /// Whether it was produced by the strategy file's model version.
    pub current_model: bool,
}

impl DecisionEngine {
    /// Decides a request and says, per strategy, why it matched or not, and
    /// what each settling step (cap, score, experiment) said.
    pub fn explain(&self, req: &DecisionRequest<'_>) -> Explanation {
        let decision = self.decide_uncounted(req);
        let live = self.live.load();
        let set = live.set.clone();
        let shifts = live.shifts.load();
        let doubtful_ids = req.devices.iter().filter(|d| d.is_doubtful()).count();
        let user_id = self.index.resolve(req.devices);
        let blacklisted = self
            .blacklist
            .check(req.devices, user_id, self.clock.now_ms());
        let today = self.clock.today();
        let explain_with = |profile: &UserProfile, known_user: bool| {
            let ctx = EvalContext {
                profile,
                known_user,
                today,
                os: req.os,
            };
            let verdicts = set
                .strategies()
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let failed = s.first_failing_clause(&ctx);
                    let mut v = Verdict {
                        strategy_id: s.id.to_string(),
                        matched: failed.is_none(),
                        failed_clause: failed.map(str::to_string),
                        refused: None,
                        cap: None,
                        score: None,
                        missing_vector: false,
                        arm: None,
                        bid_factor: None,
                    };
                    if failed.is_none() {
                        let shift = shifts.get(i).copied().unwrap_or_default();
                        let st = self.settle(
                            &set,
                            s,
                            profile,
                            (user_id.filter(|_| known_user), req.devices),
                            req.experiments,
                            today,
                            shift,
                        );
                        v.matched = st.taken.is_some();
                        v.bid_factor = st.taken.as_ref().map(|m| m.bid_factor);
                        v.refused = st.refused;
                        v.cap = st.cap;
                        v.score = st.score;
                        v.missing_vector = st.missing_vector;
                        v.arm = st
                            .arm
                            .zip(s.experiment.as_ref())
                            .map(|(a, e)| e.label(a).to_string());
                    }
                    v
                })
                .collect::<Vec<_>>();
            let user_cap = set
                .user_cap
                .filter(|_| known_user)
                .map(|c| c.user_state(profile, today));
            let vector = profile.vector().map(|v| VectorInfo {
                dims: v.dims(),
                current_model: set.model.as_ref().is_some_and(|m| m.produced(&v)),
            });
            (verdicts, user_cap, vector)
        };
        let (verdicts, user_cap, vector) = user_id
            .and_then(|u| self.index.with_profile(u, |p| explain_with(p, true)))
            .unwrap_or_else(|| explain_with(&UserProfile::empty(), false));
        Explanation {
            user_id,
            doubtful_ids,
            strategy_version: set.version.clone(),
            blacklisted,
            user_cap,
            vector,
            decision,
            verdicts,
        }
    }
}
