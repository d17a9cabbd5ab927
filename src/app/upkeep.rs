//! The decision side's periodic upkeep: recalibration on the configured
//! cadence, expired blacklist entries purged, the entries gauge kept current
//! and the blacklist saved beside the snapshots.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::decision::DecisionEngine;
use crate::decision::ledger::CalibrationConfig;
use crate::telemetry;

/// The running upkeep task.
pub struct Upkeep {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Upkeep {
    /// Stops the task between two rounds (never during a blacklist save) and
    /// waits for it, so that a final save after this one cannot race it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the upkeep task failed");
        }
    }
}

/// Starts the upkeep task; it runs until [`Upkeep::stop`].
pub fn spawn(
    engine: Arc<DecisionEngine>,
    cfg: &CalibrationConfig,
    blacklist_file: Option<PathBuf>,
) -> Upkeep {
    let every = Duration::from_secs(cfg.interval_seconds.max(1));
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stopped => return,
            }
            engine.recalibrate();
            let now = engine.clock().now_ms();
            let blacklist = engine.blacklist();
            blacklist.purge_expired(now);
            for (reason, n) in blacklist.count_by_reason(now) {
                metrics::gauge!(telemetry::BLACKLIST_ENTRIES, "reason" => reason.label())
                    .set(n as f64);
            }
            if let Some(path) = &blacklist_file {
                let (bl, path) = (blacklist.clone(), path.clone());
                // file I/O off the async workers
                let saved = tokio::task::spawn_blocking(move || bl.save_to(&path, now)).await;
                if let Ok(Err(e)) = saved {
                    tracing::warn!(error = %e, "cannot save the blacklist");
                }
            }
        }
    });
    Upkeep { stop, task }
}
