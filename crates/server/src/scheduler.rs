//! The scheduler: starts a run of each unpaused connection every N minutes, and retries a
//! failed run with exponential backoff (at most the interval). Its only memory is the store's
//! run history, so a restarted server picks the schedule up where it was.

use crate::model::{Run, RunStatus, Trigger};
use crate::runner::Runner;
use crate::store::{Store, StoredConnection};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// When the next run of `c` is due (epoch ms) and why, given its newest runs (newest
/// first). `minute` is the length of a schedule minute in ms (60 000 outside tests).
pub fn next_due(c: &StoredConnection, runs: &[Run], minute_ms: i64) -> (i64, Trigger, Vec<String>) {
    let interval = i64::from(c.schedule.every_minutes) * minute_ms;
    let Some(last) = runs.first() else {
        return (
            c.schedule_anchor_ms + interval,
            Trigger::Schedule,
            Vec::new(),
        );
    };
    if matches!(last.status, RunStatus::Failed | RunStatus::Cancelled) {
        let failures = runs
            .iter()
            .take_while(|r| matches!(r.status, RunStatus::Failed | RunStatus::Cancelled))
            .count()
            .clamp(1, 16) as u32;
        let backoff = minute_ms.saturating_mul(1 << (failures - 1)).min(interval);
        let ended = last.ended_at.unwrap_or(last.queued_at);
        return (ended + backoff, Trigger::Retry, last.resync.clone());
    }
    (
        last.queued_at.max(c.schedule_anchor_ms) + interval,
        Trigger::Schedule,
        Vec::new(),
    )
}

/// Wakes every `tick` and starts the runs that are due, until `stop` fires.
pub async fn run(
    store: Store,
    runner: Runner,
    minute: Duration,
    tick: Duration,
    stop: CancellationToken,
) {
    let minute_ms = minute.as_millis().max(1) as i64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let connections = match store.connections() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the scheduler cannot read the connections");
                continue;
            }
        };
        let now = sluice_core::now_ms();
        for c in connections {
            if c.schedule.paused || runner.active_run(&c.id).is_some() {
                continue;
            }
            let runs = match store.runs(&c.id, 20) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(connection_id = %c.id, error = %e, "the scheduler cannot read the runs");
                    continue;
                }
            };
            let (due, trigger, resync) = next_due(&c, &runs, minute_ms);
            if now < due {
                continue;
            }
            match runner.start(&c.id, trigger, resync) {
                Ok(run) => {
                    tracing::info!(connection_id = %c.id, run_id = %run.id, trigger = ?trigger, "scheduled run queued");
                }
                Err(e) => {
                    tracing::debug!(connection_id = %c.id, error = %e, "scheduled run not started")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Schedule;

    fn connection() -> StoredConnection {
        StoredConnection {
            id: "c".into(),
            name: "c".into(),
            source: "lever".into(),
            sink: "parquet".into(),
            destination: "/tmp/x".into(),
            source_settings: Default::default(),
            sink_settings: Default::default(),
            tables: Default::default(),
            schedule: Schedule {
                every_minutes: 60,
                paused: false,
            },
            oauth: None,
            created_at: 0,
            updated_at: 0,
            schedule_anchor_ms: 1_000,
        }
    }

    fn run(status: RunStatus, queued_at: i64, ended_at: i64) -> Run {
        Run {
            id: "r".into(),
            connection_id: "c".into(),
            status,
            trigger: Trigger::Schedule,
            resync: vec!["users".into()],
            queued_at,
            started_at: Some(queued_at),
            ended_at: Some(ended_at),
            tables: Default::default(),
            requests: 0,
            requests_by_endpoint: Default::default(),
            responses_by_status: Default::default(),
            throttled: 0,
            bytes_written: 0,
            error_kind: None,
            error_message: None,
        }
    }

    #[test]
    fn schedule_and_backoff() {
        let c = connection();
        assert_eq!(next_due(&c, &[], 1).0, 1_060);
        let ok = run(RunStatus::Succeeded, 5_000, 5_010);
        assert_eq!(
            next_due(&c, std::slice::from_ref(&ok), 1),
            (5_060, Trigger::Schedule, vec![])
        );
        let failed = run(RunStatus::Failed, 6_000, 6_010);
        let (due, trigger, resync) = next_due(&c, &[failed.clone(), ok.clone()], 1);
        assert_eq!((due, trigger), (6_011, Trigger::Retry));
        assert_eq!(
            resync,
            vec!["users".to_owned()],
            "a retry repeats the re-sync"
        );
        let three = [failed.clone(), failed.clone(), failed.clone(), ok];
        assert_eq!(next_due(&c, &three, 1).0, 6_014);
        let many = vec![failed; 12];
        assert_eq!(
            next_due(&c, &many, 1).0,
            6_070,
            "backoff is capped by the interval"
        );
    }
}
