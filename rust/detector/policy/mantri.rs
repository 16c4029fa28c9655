//! Mantri (Ananthanarayanan et al., "Reining in the Outliers in Map-Reduce Clusters using
//! Mantri", OSDI 2010, §5.1 "Resource-aware restart"): act on an outlier as soon as its
//! remaining time is known to be long, by killing and restarting it while tasks wait for
//! slots, or by a duplicate when a copy is likely to finish first given the copies that
//! already run. The rules, as `MantriPolicy`'s docstring writes them:
//!
//! - t_new of a task, the time a new attempt would take, is a distribution (the stage's
//!   sketches): when the task's input bytes b are known and positive and the stage has at
//!   least `min_samples` successes with known bytes (finite time per byte), the stage's time
//!   per byte scaled by b (§5.1 scales t_new by the task's input size, so a task that is slow
//!   because it is large is not restarted: a new attempt would be as slow; ours: without the
//!   paper's location factor and scheduling lag). Otherwise the stage's durations. E[t_new]
//!   is the distribution's mean (per byte: the mean time per byte × b).
//! - t_rem of an attempt: from its progress, `(1 − p) / rate` (the estimate at its latest
//!   progress report); without progress, from its elapsed time `e` against its task's t_new
//!   distribution (so scaled by b where t_new is): the upper median of the values longer than
//!   `e`, minus `e`, and `e` itself once it has outlived every one (ours: the paper reads
//!   t_rem from data read).
//! - restart (paper: "kill, restart task if t_rem > E(t_new) + Δ", while tasks wait for
//!   slots): pending > 0, the task's only attempt, `t_rem > E[t_new] + interval`.
//! - duplicate (paper: "duplicate if P(t_rem > t_new (c+1)/c) > δ"): with c running
//!   attempts, `t_rem · c / (c + 1) > q`, where q is the t_new value at rank `floor(δ n)`
//!   (n: the values of that distribution): more than δ of them are shorter.
//! - at most `max_restarts` (the paper's γ = 3) attempts beyond the first, restarts and
//!   duplicates alike; a stage acts from `min_samples` successes on (no 75 % gate).

use super::spark::finite_in;
use super::{Context, Pick, View};
use crate::detector::stage::Stage;
use crate::error::{Error, Result};
use crate::sketch::QuantileSketch;

/// `Pick::action` of a duplicate (the attempt keeps running beside a copy).
pub const COPY: u8 = 0;
/// `Pick::action` of a kill-and-restart (the attempt is stopped, a new one starts).
pub const RESTART: u8 = 1;

/// Points of the duration distribution a stage keeps for attempts without progress.
const GRID: u64 = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Mantri {
    /// δ: a duplicate needs P(a copy finishes within c/(c+1) of t_rem) > δ.
    pub delta: f64,
    /// γ: attempts of a task beyond its first (restarts and duplicates).
    pub max_restarts: u32,
    /// Successes a stage needs before its t_new distribution is used.
    pub min_samples: u64,
    /// Δ: the period of progress reports and checks, the margin a restart must save.
    pub interval: f64,
}

impl Default for Mantri {
    fn default() -> Mantri {
        Mantri {
            delta: 0.25,
            max_restarts: 3,
            min_samples: 3,
            interval: 10.0,
        }
    }
}

/// A task's t_new at one check.
#[derive(Debug, Clone, Copy)]
struct Rule {
    /// E[t_new]: the mean.
    mean: f64,
    /// The t_new value at rank floor(δ n).
    quick: f64,
    /// The least t_rem either test can pass: min(quick, mean + interval).
    least: f64,
    /// Which distribution: `None` for the durations, `Some(b)` for time per byte × b.
    bytes: Option<f64>,
}

/// A stage's numbers at one check: its durations, and its time per byte when enough
/// successes had known bytes.
#[derive(Debug, Clone, Copy)]
struct Rules {
    durations: Rule,
    /// (mean, value at rank floor(δ n)) of the time per byte.
    per_byte: Option<(f64, f64)>,
}

impl Rules {
    /// t_new of a task of `input_bytes` (negative: unknown).
    fn of_task(&self, input_bytes: i64, interval: f64) -> Rule {
        match self.per_byte {
            Some((mean, quick)) if input_bytes > 0 => {
                let b = input_bytes as f64;
                let (mean, quick) = (mean * b, quick * b);
                Rule {
                    mean,
                    quick,
                    least: quick.min(mean + interval),
                    bytes: Some(b),
                }
            }
            _ => self.durations,
        }
    }
}

/// A stage's supports for attempts without progress: of its durations and of its time per byte.
#[derive(Default)]
struct Supports {
    durations: Option<Support>,
    per_byte: Option<Support>,
}

impl Supports {
    fn remaining(&mut self, stage: &Stage, rule: Rule, elapsed: f64) -> f64 {
        match rule.bytes {
            None => self
                .durations
                .get_or_insert_with(|| Support::of(&stage.durations))
                .remaining(elapsed, 1.0),
            Some(b) => self
                .per_byte
                .get_or_insert_with(|| Support::of(&stage.per_byte))
                .remaining(elapsed, b),
        }
    }
}

/// Sorted points of a sketch's values (every one while the sketch is exact, else a grid of
/// ranks), for the remaining time of an attempt without progress.
struct Support {
    ranks: Vec<u64>,
    values: Vec<f64>,
    count: u64,
    max: f64,
}

impl Support {
    fn of(sketch: &QuantileSketch) -> Support {
        let n = sketch.count();
        let points = n.min(GRID);
        // While exact, points == n and the ranks are 0..n.
        let ranks: Vec<u64> = (0..points)
            .map(|i| ((i as u128 * n as u128) / points as u128) as u64)
            .collect();
        let values = sketch.values_at_sorted_ranks(&ranks);
        Support {
            ranks,
            values,
            count: n,
            max: sketch.max(),
        }
    }

    /// The value at `rank` (the nearest point at or above it).
    fn at_rank(&self, rank: u64) -> f64 {
        let i = self.ranks.partition_point(|&r| r < rank);
        self.values.get(i).copied().unwrap_or(self.max)
    }

    /// t_rem of an attempt that has run `elapsed` and reported no progress, against the
    /// values times `scale` (positive: the order of the values is kept).
    fn remaining(&self, elapsed: f64, scale: f64) -> f64 {
        let j = self.values.partition_point(|&v| v * scale <= elapsed);
        let below = if j == self.values.len() {
            self.count
        } else {
            self.ranks[j]
        };
        if below >= self.count {
            // Outlived every success: assume it needs as long again (ours).
            return elapsed;
        }
        self.at_rank(below + (self.count - below) / 2) * scale - elapsed
    }
}

/// One examined attempt: what the decision needs.
#[derive(Debug, Clone, Copy)]
struct Seen {
    task: u32,
    attempt: u32,
    slot: usize,
    elapsed: f64,
    remaining: f64,
}

impl Mantri {
    pub fn validate(&self) -> Result<()> {
        finite_in("delta", self.delta, 0.0, 1.0)?;
        if self.delta >= 1.0 {
            return Err(Error::value("delta", "must be in [0, 1), got 1.0"));
        }
        if self.min_samples == 0 {
            return Err(Error::value("min_samples", "must be at least 1, got 0"));
        }
        super::spark::positive("interval", self.interval)
    }

    /// (mean, value at rank floor(δ n)) of a sketch of n values.
    fn moments(&self, sketch: &QuantileSketch) -> (f64, f64) {
        let n = sketch.count();
        // floor(δ n) in doubles; below n because δ < 1.
        let rank = (self.delta * n as f64).floor() as u64;
        (sketch.sum() / n as f64, sketch.value_at_rank(rank))
    }

    fn rules(&self, stage: &Stage) -> Option<Rules> {
        let n = stage.durations.count();
        if stage.successes < self.min_samples || n == 0 {
            return None;
        }
        let (mean, quick) = self.moments(&stage.durations);
        let durations = Rule {
            mean,
            quick,
            least: quick.min(mean + self.interval),
            bytes: None,
        };
        // Zero-byte successes with a positive time have no finite time per byte and are not
        // in the sketch; the rule counts the ones that are.
        let per_byte =
            (stage.per_byte.count() >= self.min_samples).then(|| self.moments(&stage.per_byte));
        Some(Rules {
            durations,
            per_byte,
        })
    }

    pub(super) fn picks(&self, view: &View<'_>, ctx: Context) -> Vec<Pick> {
        let (live, tasks) = (view.live, view.tasks);
        let rules: Vec<Option<Rules>> = view.stages.iter().map(|s| self.rules(s)).collect();
        let mut supports: Vec<Supports> = Vec::new();
        let mut picks = Vec::new();
        // Attempts of tasks with more than one running: decided per task, below.
        let mut shared: Vec<Seen> = Vec::new();
        for slot in 0..live.len() {
            let s = view.at(live.stage[slot]);
            let Some(stage_rules) = rules[s] else {
                continue;
            };
            let task = live.task[slot] as usize;
            // A task's bytes are read only where its stage has a time per byte to scale.
            let rule = if stage_rules.per_byte.is_some() {
                stage_rules.of_task(tasks.input_bytes[task], self.interval)
            } else {
                stage_rules.durations
            };
            let elapsed = ctx.now - live.start[slot];
            let beat = &live.beat[slot];
            let remaining = if !beat.progress.is_nan() && beat.progress_rate > 0.0 {
                (1.0 - beat.progress) / beat.progress_rate
            } else {
                if supports.is_empty() {
                    supports.resize_with(view.stages.len(), Supports::default);
                }
                supports[s].remaining(view.stages[s], rule, elapsed)
            };
            // Both tests need at least this (c / (c + 1) < 1), so most attempts stop here,
            // before the rest of the task table is read. Only while some task runs several attempts
            // (then a running copy is flagged) must a stopped attempt still be seen: it may be
            // its task's quickest, which then judges, and fails, the task.
            let passes = remaining > rule.least;
            if !passes && (view.speculative_running == 0 || tasks.running(task) < 2) {
                continue;
            }
            let Some(running) = tasks.copyable(task) else {
                continue;
            };
            if tasks.started[task].saturating_sub(1) >= self.max_restarts {
                continue;
            }
            let seen = Seen {
                task: task as u32,
                attempt: live.attempt[slot],
                slot,
                elapsed,
                remaining,
            };
            if running == 1 {
                picks.extend(self.decide(view, rule, seen, 1, ctx));
            } else {
                shared.push(seen);
            }
        }
        // A task with several attempts is judged by the one likely to finish first (the
        // least t_rem, ties to the lowest attempt id).
        shared.sort_unstable_by(|a, b| {
            a.task
                .cmp(&b.task)
                .then(a.remaining.total_cmp(&b.remaining))
                .then(a.attempt.cmp(&b.attempt))
        });
        let mut i = 0;
        while i < shared.len() {
            let first = shared[i];
            let task = first.task as usize;
            let running = tasks.running(task);
            if let Some(stage_rules) = rules[view.at(live.stage[first.slot])] {
                let rule = stage_rules.of_task(tasks.input_bytes[task], self.interval);
                picks.extend(self.decide(view, rule, first, running, ctx));
            }
            while i < shared.len() && shared[i].task == first.task {
                i += 1;
            }
        }
        picks
    }

    /// Restart, duplicate or leave alone the task whose quickest running attempt is `seen`.
    fn decide(
        &self,
        view: &View<'_>,
        rule: Rule,
        seen: Seen,
        running: u32,
        ctx: Context,
    ) -> Option<Pick> {
        let restart_at = rule.mean + self.interval;
        let (action, threshold) = if running == 1 && ctx.pending > 0 && seen.remaining > restart_at
        {
            (RESTART, restart_at)
        } else {
            let c = running as f64;
            if (seen.remaining * c) / (c + 1.0) > rule.quick {
                (COPY, (rule.quick * (c + 1.0)) / c)
            } else {
                return None;
            }
        };
        let mut pick = Pick::new(
            view.live,
            seen.slot,
            seen.elapsed,
            threshold,
            seen.remaining - rule.mean,
        );
        pick.action = action;
        Some(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{Detector, InputBytes, Policy, Times};

    fn ctx(now: f64, pending: u64) -> Context {
        Context {
            now,
            pending,
            slots: None,
        }
    }

    /// A stage of `n` tasks, all started at 0; the first `done` finish at the given times.
    fn stage(det: &mut Detector, n: i64, done: &[f64]) -> Vec<i64> {
        let s = det.add_stage(Some(n), None).unwrap() as i64;
        let first = det.add_tasks(s, n, InputBytes::Unknown, true).unwrap() as i64;
        let tasks: Vec<i64> = (first..first + n).collect();
        let a = det.start_many(&tasks, Times::One(0.0), None).unwrap() as i64;
        for (i, &t) in done.iter().enumerate() {
            det.finish(a + i as i64, t, true, None).unwrap();
        }
        (a..a + n).collect()
    }

    fn mantri(interval: f64) -> Detector {
        let policy = Mantri {
            interval,
            ..Mantri::default()
        };
        Detector::new(Policy::Mantri(policy)).unwrap()
    }

    #[test]
    fn restarts_only_while_tasks_wait() {
        let mut det = mantri(1.0);
        let attempts = stage(&mut det, 4, &[1.0, 1.0, 1.0]);
        // Progress 0.1 after 1 s: t_rem = 9 s > E[t_new] + Δ = 2 s.
        det.heartbeat(attempts[3], 1.0, Some(0.1), None).unwrap();
        let waiting = det.check(ctx(1.0, 1)).unwrap();
        assert_eq!((waiting.task, waiting.action), (vec![3], vec![RESTART]));
        assert_eq!(waiting.threshold, vec![2.0]);
        let idle = det.check(ctx(1.0, 0)).unwrap();
        assert_eq!(idle.action, vec![COPY]);
    }

    #[test]
    fn a_copy_must_be_likely_to_finish_within_c_over_c_plus_one() {
        let mut det = mantri(10.0);
        let attempts = stage(&mut det, 5, &[1.0, 2.0, 3.0, 4.0]);
        // q = durations[floor(0.25 × 4)] = 2: a copy needs t_rem / 2 > 2.
        det.heartbeat(attempts[4], 4.0, Some(0.5), None).unwrap(); // t_rem = 4
        assert!(det.check(ctx(4.0, 0)).unwrap().is_empty());
        det.heartbeat(attempts[4], 8.0, Some(0.6), None).unwrap(); // t_rem = 5.33
        let c = det.check(ctx(8.0, 0)).unwrap();
        assert_eq!((c.action, c.threshold), (vec![COPY], vec![4.0]));
        // With a copy running (c = 2) the bar is t_rem × 2/3 > 2: 5.33 passes, and the task
        // is judged by its quicker attempt.
        let copy = det.start(4, 8.0, 1).unwrap() as i64;
        det.heartbeat(copy, 9.0, Some(0.5), None).unwrap(); // t_rem = 1
        assert!(det.check(ctx(9.0, 0)).unwrap().is_empty());
    }

    #[test]
    fn without_progress_elapsed_is_read_against_the_durations() {
        let mut det = mantri(10.0);
        stage(&mut det, 5, &[1.0, 2.0, 3.0, 10.0]);
        // At 2.5 s: durations above it are [3, 10], upper median 10 → t_rem = 7.5 > 2 × 2.
        let c = det.check(ctx(2.5, 0)).unwrap();
        assert_eq!(c.task, vec![4]);
        // At 12 s it has outlived every success: t_rem = elapsed = 12.
        let c = det.check(ctx(12.0, 0)).unwrap();
        assert_eq!(c.task, vec![4]);
    }

    #[test]
    fn stops_after_max_restarts_extra_attempts() {
        let mut det = mantri(1.0);
        stage(&mut det, 4, &[1.0, 1.0, 1.0]);
        let mut now = 1.0;
        for _ in 0..3 {
            assert_eq!(det.check(ctx(now + 5.0, 1)).unwrap().action, vec![RESTART]);
            let running = det.start(3, now + 5.0, 0).unwrap();
            // The restart kills the old attempt: end every attempt but the new one.
            let old = running as i64 - 1;
            if det.running(3).unwrap() > 1 {
                det.finish(old, now + 5.0, false, None).unwrap();
            }
            now += 5.0;
        }
        assert!(det.check(ctx(now + 100.0, 1)).unwrap().is_empty());
    }

    /// A stage of tasks of the given bytes, all started at 0 on node 0 (the last one on node
    /// 1); the first `done` finish at the given times.
    fn sized_stage(det: &mut Detector, bytes: &[i64], done: &[f64]) -> Vec<i64> {
        let n = bytes.len() as i64;
        let s = det.add_stage(Some(n), None).unwrap() as i64;
        let first = det.add_tasks(s, n, InputBytes::Each(bytes), true).unwrap() as i64;
        let tasks: Vec<i64> = (first..first + n).collect();
        let a = det.start_many(&tasks, Times::One(0.0), None).unwrap() as i64;
        for (i, &t) in done.iter().enumerate() {
            det.finish(a + i as i64, t, true, None).unwrap();
        }
        (a..a + n).collect()
    }

    #[test]
    fn t_new_is_the_time_per_byte_times_the_task_s_bytes() {
        // Three tasks of 128 bytes took 1 s each. A task of 1280 bytes needs about 10 s; at
        // progress 0.1 after 1 s (t_rem 9 s) it is on time, not an outlier (by the durations,
        // E[t_new] + Δ = 2 s, it would be restarted).
        let mut det = mantri(1.0);
        let attempts = sized_stage(&mut det, &[128, 128, 128, 1280, 128], &[1.0, 1.0, 1.0]);
        det.heartbeat(attempts[3], 1.0, Some(0.1), None).unwrap();
        det.heartbeat(attempts[4], 1.0, Some(0.5), None).unwrap();
        assert!(det.check(ctx(1.0, 1)).unwrap().is_empty());
        // The same task at a tenth of that rate: t_rem = 0.9 / 0.01 = 90 s > E[t_new] + Δ = 11 s.
        det.heartbeat(attempts[3], 10.0, Some(0.1), None).unwrap();
        let c = det.check(ctx(10.0, 1)).unwrap();
        assert_eq!((c.task, c.action), (vec![3], vec![RESTART]));
        assert_eq!(c.threshold, vec![11.0]);
    }

    #[test]
    fn without_progress_elapsed_is_read_against_the_scaled_times() {
        let mut det = mantri(10.0);
        // Successes of 128 bytes in 1, 2, 3 and 10 s; the last task has 256 bytes, so its
        // t_new takes the values 2, 4, 6 and 20, and q = 4 (rank floor(0.25 × 4) = 1).
        sized_stage(&mut det, &[128, 128, 128, 128, 256], &[1.0, 2.0, 3.0, 10.0]);
        // At 2.5 s: the values above it are [4, 6, 20], upper median 6 → t_rem = 3.5, and
        // 3.5 / 2 is not over 4. (Against the durations: 10 − 2.5 = 7.5 over 2 × 2, a copy.)
        assert!(det.check(ctx(2.5, 0)).unwrap().is_empty());
        // At 5 s: above it [6, 20] → t_rem = 20 − 5 = 15, over 4 × 2: a copy, threshold 8.
        let c = det.check(ctx(5.0, 0)).unwrap();
        assert_eq!((c.task, c.threshold), (vec![4], vec![8.0]));
        // At 25 s it has outlived every value: t_rem = 25.
        assert_eq!(det.check(ctx(25.0, 0)).unwrap().task, vec![4]);
    }

    #[test]
    fn waits_for_min_samples_and_rejects_bad_settings() {
        let mut det = mantri(1.0);
        stage(&mut det, 4, &[1.0, 1.0]);
        assert!(det.check(ctx(100.0, 1)).unwrap().is_empty());
        for bad in [
            Mantri {
                delta: 1.0,
                ..Mantri::default()
            },
            Mantri {
                min_samples: 0,
                ..Mantri::default()
            },
            Mantri {
                interval: f64::NAN,
                ..Mantri::default()
            },
        ] {
            assert!(Detector::new(Policy::Mantri(bad)).is_err());
        }
    }
}
