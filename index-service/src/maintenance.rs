//! The background task: purges expired records and letters (counting them), and keeps the metrics and
//! rate-limit tables from growing without bound.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::AppState;

/// Records deleted per transaction, so a large purge never holds the write lock for long.
const PURGE_CHUNK: u32 = 5_000;
/// How often histogram samples are folded and idle clients forgotten.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Starts the task on `tasks`; it stops when `stop` is cancelled, after finishing a purge
/// under way.
pub fn spawn(state: AppState, stop: CancellationToken, tasks: &TaskTracker) -> JoinHandle<()> {
    tasks.spawn(async move {
        let mut purge = interval(state.config.purge_every());
        purge.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut upkeep = interval(UPKEEP_EVERY);
        upkeep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = purge.tick() => {
                    purge_expired(&state).await;
                    purge_expired_letters(&state).await;
                }
                _ = upkeep.tick() => {
                    state.metrics.upkeep();
                    state.limits.forget_idle_clients();
                }
            }
        }
        tracing::debug!("purge task stopped");
    })
}

/// Deletes every expired record now; returns how many went.
pub async fn purge_expired(state: &AppState) -> u64 {
    let mut total = 0;
    loop {
        match state.writer.purge(PURGE_CHUNK).await {
            Ok(purged) => {
                total += purged;
                state.metrics.expired.increment(purged);
                if purged < u64::from(PURGE_CHUNK) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "purging expired records");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(expired = total, "purged expired records");
    }
    total
}

/// Deletes every expired letter now; returns how many went.
pub async fn purge_expired_letters(state: &AppState) -> u64 {
    let mut total = 0;
    loop {
        match state.writer.purge_mailbox(PURGE_CHUNK).await {
            Ok(purged) => {
                total += purged;
                state.metrics.mailbox.expired.increment(purged);
                if purged < u64::from(PURGE_CHUNK) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "purging expired letters");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(expired = total, "purged expired letters");
    }
    total
}
