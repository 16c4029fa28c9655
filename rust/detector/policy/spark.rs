//! Apache Spark's rule (`TaskSetManager.checkSpeculatableTasks`, Spark 3.5/4.x): copy a task
//! whose only running attempt has run longer than `multiplier ×` the stage's median, once a
//! `quantile` of the stage has succeeded.

use super::{scan, Context, Pick, View};
use crate::error::{py_float, Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Spark {
    pub quantile: f64,
    pub multiplier: f64,
    pub min_runtime: f64,
    /// `spark.speculation.task.duration.threshold`; only a positive value counts.
    pub task_duration_threshold: Option<f64>,
    pub slots_per_executor: u64,
    pub efficiency: bool,
    pub process_rate_multiplier: f64,
    pub long_run_task_factor: f64,
}

impl Default for Spark {
    /// Spark 3.x defaults.
    fn default() -> Spark {
        Spark {
            quantile: 0.75,
            multiplier: 1.5,
            min_runtime: 0.1,
            task_duration_threshold: None,
            slots_per_executor: 1,
            efficiency: false,
            process_rate_multiplier: 0.75,
            long_run_task_factor: 2.0,
        }
    }
}

/// How a stage is examined at one check.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    Off,
    /// Enough successes: threshold from the median; the efficiency test may apply.
    Regular,
    /// Too few successes, but few enough tasks to fit one executor: the fixed threshold.
    FewTasks,
}

impl Spark {
    pub fn validate(&self) -> Result<()> {
        finite_in("quantile", self.quantile, 0.0, 1.0)?;
        finite_in("multiplier", self.multiplier, 0.0, f64::MAX)?;
        finite_in("min_runtime", self.min_runtime, 0.0, f64::MAX)?;
        if let Some(t) = self.task_duration_threshold {
            finite_in("task_duration_threshold", t, 0.0, f64::MAX)?;
        }
        if self.slots_per_executor == 0 {
            return Err(Error::value(
                "slots_per_executor",
                "must be at least 1, got 0",
            ));
        }
        positive("process_rate_multiplier", self.process_rate_multiplier)?;
        finite_in(
            "process_rate_multiplier",
            self.process_rate_multiplier,
            0.0,
            1.0,
        )?;
        finite_in(
            "long_run_task_factor",
            self.long_run_task_factor,
            1.0,
            f64::MAX,
        )?;
        Ok(())
    }

    fn fixed_threshold(&self) -> Option<f64> {
        self.task_duration_threshold.filter(|t| *t > 0.0)
    }

    /// The stage's path and threshold (Spark's `checkSpeculatableTasks`).
    fn stage_rule(&self, stage: &super::Stage) -> (Path, f64) {
        // Spark's `numTasks` is the task set's fixed length; ours leaves out the dropped
        // tasks (see `Detector::drop_task`), which Spark never has in a live task set.
        let n = stage.num_tasks();
        if n == 0 || (n == 1 && self.fixed_threshold().is_none()) {
            return (Path::Off, f64::INFINITY);
        }
        // The product in doubles, floored: 0.29 × 100 gives 28.
        let min_finished = ((self.quantile * n as f64).floor() as u64).max(1);
        if stage.successes >= min_finished {
            // Spark 3.5+: the upper middle for an even count.
            let median = stage.durations.value_at_rank(stage.successes / 2);
            (
                Path::Regular,
                (self.multiplier * median).max(self.min_runtime),
            )
        } else if let Some(fixed) = self
            .fixed_threshold()
            .filter(|_| n <= self.slots_per_executor)
        {
            (Path::FewTasks, fixed)
        } else {
            (Path::Off, f64::INFINITY)
        }
    }

    pub(super) fn picks(&self, view: &View<'_>, ctx: Context) -> Vec<Pick> {
        let rules: Vec<(Path, f64)> = view.stages.iter().map(|s| self.stage_rule(s)).collect();
        let cutoff: Vec<f64> = rules.iter().map(|r| r.1).collect();
        let live = view.live;
        scan(view, ctx.now, &cutoff, false, |slot, elapsed| {
            let task = live.task[slot] as usize;
            if view.tasks.copyable(task) != Some(1) {
                return None;
            }
            let stage = view.at(live.stage[slot]);
            let (path, threshold) = rules[stage];
            if path == Path::Regular
                && self.efficiency
                && !self.inefficient_or_long(view, slot, stage, elapsed, threshold)
            {
                return None;
            }
            Some(Pick::new(
                live,
                slot,
                elapsed,
                threshold,
                elapsed - threshold,
            ))
        })
    }

    /// SPARK-32170's efficiency test: a copy only helps an attempt that runs far too long or
    /// processes its records slower than the stage's successes did.
    fn inefficient_or_long(
        &self,
        view: &View<'_>,
        slot: usize,
        stage: usize,
        elapsed: f64,
        threshold: f64,
    ) -> bool {
        if elapsed > self.long_run_task_factor * threshold {
            return true;
        }
        let stage = view.stages[stage];
        let stage_rate = if stage.record_seconds > 0.0 {
            stage.records / stage.record_seconds
        } else {
            f64::INFINITY
        };
        view.live.beat[slot].record_rate < self.process_rate_multiplier * stage_rate
    }
}

pub(crate) fn finite_in(arg: &str, x: f64, lo: f64, hi: f64) -> Result<()> {
    if x.is_finite() && x >= lo && x <= hi {
        Ok(())
    } else {
        Err(Error::value(
            arg,
            format!("must be in [{lo}, {hi}], got {}", py_float(x)),
        ))
    }
}

pub(crate) fn positive(arg: &str, x: f64) -> Result<()> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(Error::value(
            arg,
            format!("must be a positive number, got {}", py_float(x)),
        ))
    }
}
