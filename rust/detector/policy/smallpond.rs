//! smallpond's rule (`Scheduler.start_speculative_execution`): once a stage has `min_samples`
//! successes, retry a task whose newest attempt exceeds the stage's median by more than the
//! tail spread (p95 − p50 with a short queue, else p99 − p50, backed off per retry), and by
//! at least the executor probe timeout.

use super::spark::finite_in;
use super::{Context, Pick, View};
use crate::error::{Error, Result};
use crate::sketch::Method;

#[derive(Debug, Clone, PartialEq)]
pub struct Smallpond {
    pub min_samples: u64,
    /// secs_executor_probe_interval × max_num_missed_probes (30 s × 6).
    pub probe_timeout: f64,
    pub aggressive: bool,
    pub max_retry_count: u32,
}

impl Default for Smallpond {
    fn default() -> Smallpond {
        Smallpond {
            min_samples: 20,
            probe_timeout: 180.0,
            aggressive: false,
            max_retry_count: 5,
        }
    }
}

/// A stage's numbers at one check.
#[derive(Debug, Clone, Copy)]
struct Spread {
    p50: f64,
    /// The threshold before the retry back-off.
    base: f64,
    /// Whether the back-off `(2 + retry_count)` applies.
    backoff: bool,
}

impl Smallpond {
    pub fn validate(&self) -> Result<()> {
        if self.min_samples == 0 {
            return Err(Error::value("min_samples", "must be at least 1, got 0"));
        }
        finite_in("probe_timeout", self.probe_timeout, 0.0, f64::MAX)?;
        Ok(())
    }

    fn spread(&self, stage: &crate::detector::stage::Stage, ctx: Context) -> Option<Spread> {
        if stage.successes < self.min_samples {
            return None;
        }
        let q = |q: f64| {
            stage
                .durations
                .quantile(q, Method::Linear)
                .unwrap_or(f64::NAN)
        };
        let p50 = q(0.5);
        // With no slot count the queue is taken as short.
        let short_queue = ctx.slots.is_none_or(|slots| ctx.pending < slots);
        let (tail, backoff) = if short_queue {
            (q(0.95), false)
        } else {
            (q(0.99), !self.aggressive)
        };
        Some(Spread {
            p50,
            base: self.probe_timeout.max(tail - p50),
            backoff,
        })
    }

    pub(super) fn picks(&self, view: &View<'_>, ctx: Context) -> Vec<Pick> {
        let spreads: Vec<Option<Spread>> =
            view.stages.iter().map(|s| self.spread(s, ctx)).collect();
        let (live, tasks) = (view.live, view.tasks);
        let mut picks = Vec::new();
        for slot in 0..live.len() {
            let Some(spread) = spreads[view.at(live.stage[slot])] else {
                continue;
            };
            let elapsed = ctx.now - live.start[slot];
            // Cheap necessary condition first: the smallest threshold any retry count gives.
            let least = if spread.backoff {
                2.0 * spread.base
            } else {
                spread.base
            };
            if elapsed - spread.p50 < least {
                continue;
            }
            let task = live.task[slot] as usize;
            let retry_count = tasks.started[task].saturating_sub(1);
            if tasks.copyable(task).is_none()
                || tasks.newest[task] != live.attempt[slot]
                || retry_count >= self.max_retry_count
            {
                continue;
            }
            let threshold = if spread.backoff {
                spread.base * (2.0 + retry_count as f64)
            } else {
                spread.base
            };
            if elapsed - spread.p50 >= threshold {
                let at = spread.p50 + threshold;
                picks.push(Pick::new(live, slot, elapsed, at, elapsed - at));
            }
        }
        picks
    }
}
