//! Apache Flink's rule (`ExecutionTimeBasedSlowTaskDetector`): once `baseline_ratio` of a job
//! vertex has finished, an attempt is slow when its time (per input byte, where every task's
//! bytes are known) reaches `baseline_multiplier ×` the median of the fastest finished tasks.

use super::spark::{finite_in, positive};
use super::{scan, Context, Pick, View};
use crate::detector::stage::{per_byte, Stage};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Flink {
    pub baseline_ratio: f64,
    pub baseline_multiplier: f64,
    pub baseline_lower_bound: f64,
    pub max_concurrent_executions: u32,
}

impl Default for Flink {
    /// Flink 1.19 defaults.
    fn default() -> Flink {
        Flink {
            baseline_ratio: 0.75,
            baseline_multiplier: 1.5,
            baseline_lower_bound: 60.0,
            max_concurrent_executions: 2,
        }
    }
}

/// A stage's baseline at one check.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    examined: bool,
    normalised: bool,
    /// Seconds, or seconds per byte when normalised.
    value: f64,
}

impl Flink {
    pub fn validate(&self) -> Result<()> {
        // Flink's own bounds: ratio in [0, 1), multiplier > 0, lower bound >= 0.
        if !(self.baseline_ratio >= 0.0 && self.baseline_ratio < 1.0) {
            return Err(Error::value(
                "baseline_ratio",
                format!("must be in [0, 1), got {}", self.baseline_ratio),
            ));
        }
        positive("baseline_multiplier", self.baseline_multiplier)?;
        finite_in(
            "baseline_lower_bound",
            self.baseline_lower_bound,
            0.0,
            f64::MAX,
        )?;
        if self.max_concurrent_executions == 0 {
            return Err(Error::value(
                "max_concurrent_executions",
                "must be at least 1, got 0",
            ));
        }
        Ok(())
    }

    fn baseline(&self, stage: &Stage) -> Baseline {
        // Flink divides by the job vertex's task vertices (and takes N from its parallelism),
        // failed and cancelled ones included; ours leaves out the dropped tasks (see
        // `Detector::drop_task`).
        let n = stage.num_tasks();
        let normalised = stage.normalised();
        let examined = n > 0 && stage.successes as f64 / n as f64 >= self.baseline_ratio;
        // Java's Math.round: floor(x + 0.5).
        let count = (n as f64 * self.baseline_ratio + 0.5).floor() as u64;
        let value = if !examined || count == 0 {
            0.0
        } else {
            let rank = count / 2;
            let median = if normalised {
                stage.per_byte_at_rank(rank)
            } else {
                stage.durations.value_at_rank(rank)
            };
            self.baseline_multiplier * median
        };
        Baseline {
            examined,
            normalised,
            value,
        }
    }

    pub(super) fn picks(&self, view: &View<'_>, ctx: Context) -> Vec<Pick> {
        let baselines: Vec<Baseline> = view.stages.iter().map(|s| self.baseline(s)).collect();
        // A necessary condition per stage, so that the pass over every attempt is cheap;
        // the exact (per-byte) test follows for the few that pass it.
        let cutoff: Vec<f64> = baselines
            .iter()
            .zip(&view.stages)
            .map(|(b, stage)| {
                if !b.examined {
                    f64::INFINITY
                } else if !b.normalised {
                    self.baseline_lower_bound.max(b.value)
                } else if stage.min_bytes <= 0 {
                    self.baseline_lower_bound
                } else {
                    let bound = b.value * stage.min_bytes as f64 * (1.0 - 1e-9);
                    self.baseline_lower_bound.max(bound)
                }
            })
            .collect();
        let live = view.live;
        let tasks = view.tasks;
        let mut slow = scan(view, ctx.now, &cutoff, true, |slot, elapsed| {
            let task = live.task[slot] as usize;
            match tasks.copyable(task) {
                Some(running) if running < self.max_concurrent_executions => {}
                _ => return None,
            }
            let b = baselines[view.at(live.stage[slot])];
            let bytes = tasks.input_bytes[task];
            let slow_enough = if b.normalised {
                per_byte(elapsed, bytes) >= b.value
            } else {
                elapsed >= b.value
            };
            (elapsed >= self.baseline_lower_bound && slow_enough).then(|| {
                let threshold = self.threshold_seconds(b, bytes);
                Pick::new(live, slot, elapsed, threshold, elapsed - threshold)
            })
        });
        // A task once, with its slowest attempt (ties: the lowest attempt id).
        slow.sort_unstable_by(|a, b| {
            a.task
                .cmp(&b.task)
                .then(b.elapsed.total_cmp(&a.elapsed))
                .then(a.attempt.cmp(&b.attempt))
        });
        slow.dedup_by_key(|p| p.task);
        slow
    }

    /// The baseline in seconds for a task of `input_bytes`, floored at the lower bound.
    fn threshold_seconds(&self, b: Baseline, input_bytes: i64) -> f64 {
        let seconds = if b.normalised {
            b.value * input_bytes as f64
        } else {
            b.value
        };
        if seconds.is_nan() {
            self.baseline_lower_bound
        } else {
            self.baseline_lower_bound.max(seconds)
        }
    }
}
