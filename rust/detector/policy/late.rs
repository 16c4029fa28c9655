//! LATE (Zaharia et al., OSDI 2008; Hadoop's `DefaultSpeculator`): copy the attempts that
//! progress slowest and would finish last, only while a fresh copy would finish sooner, and
//! keep the copies running at once under a share of the slots.

use super::spark::finite_in;
use super::{by_urgency, linear_quantile, Context, Pick, View};
use crate::error::Result;
use crate::sketch::Method;

#[derive(Debug, Clone, PartialEq)]
pub struct Late {
    pub slow_task_quantile: f64,
    pub speculative_cap: f64,
    pub slow_node_quantile: f64,
    pub min_runtime: f64,
    pub require_benefit: bool,
    /// The floor of the cap on running copies (see `cap`).
    pub min_speculative: u64,
}

impl Default for Late {
    fn default() -> Late {
        Late {
            slow_task_quantile: 0.25,
            speculative_cap: 0.1,
            slow_node_quantile: 0.25,
            min_runtime: 60.0,
            require_benefit: true,
            min_speculative: 1,
        }
    }
}

impl Late {
    pub fn validate(&self) -> Result<()> {
        finite_in("slow_task_quantile", self.slow_task_quantile, 0.0, 1.0)?;
        finite_in("speculative_cap", self.speculative_cap, 0.0, 1.0)?;
        finite_in("slow_node_quantile", self.slow_node_quantile, 0.0, 1.0)?;
        finite_in("min_runtime", self.min_runtime, 0.0, f64::MAX)
    }

    /// Copies allowed to run at once: LATE's share of the slots, but never below
    /// `min_speculative` (10 % of fewer than ten slots would be none at all).
    pub fn cap(&self, slots: u64) -> u64 {
        let share = (self.speculative_cap * slots as f64).floor() as u64;
        share.max(self.min_speculative)
    }

    /// Whether the attempt in `slot` counts: its task has not succeeded yet. Skips the task
    /// lookup while no running attempt belongs to a finished task (the usual state).
    #[inline]
    fn counts(view: &View<'_>, slot: usize) -> bool {
        view.done_running == 0 || !view.tasks.is_done(view.live.task[slot] as usize)
    }

    /// Each stage's `slow_task_quantile` of its running attempts' progress rates. The rates
    /// are laid out by stage (a counting sort: two sequential passes) and each stage's
    /// quantile is a selection, not a sort: linear in the running attempts overall.
    fn rate_cuts(&self, view: &View<'_>) -> Vec<f64> {
        let live = view.live;
        let stages = view.stages.len();
        let mut offsets = vec![0usize; stages + 1];
        for slot in 0..live.len() {
            if Self::counts(view, slot) {
                offsets[view.at(live.stage[slot]) + 1] += 1;
            }
        }
        for s in 0..stages {
            offsets[s + 1] += offsets[s];
        }
        let mut next = offsets.clone();
        let mut rates = vec![0.0; offsets[stages]];
        for slot in 0..live.len() {
            if Self::counts(view, slot) {
                let s = view.at(live.stage[slot]);
                rates[next[s]] = live.beat[slot].progress_rate;
                next[s] += 1;
            }
        }
        (0..stages)
            .map(|s| {
                linear_quantile(
                    &mut rates[offsets[s]..offsets[s + 1]],
                    self.slow_task_quantile,
                )
            })
            .collect()
    }

    pub(super) fn picks(&self, view: &View<'_>, ctx: Context) -> Vec<Pick> {
        let (live, tasks) = (view.live, view.tasks);
        let cuts = self.rate_cuts(view);
        let medians: Vec<f64> = view
            .stages
            .iter()
            .map(|stage| {
                stage
                    .durations
                    .quantile(0.5, Method::Linear)
                    .unwrap_or(f64::NAN)
            })
            .collect();
        // Urgency is the estimated time left.
        let mut picks: Vec<Pick> = Vec::new();
        for slot in 0..live.len() {
            let s = view.at(live.stage[slot]);
            let beat = &live.beat[slot];
            let elapsed = ctx.now - live.start[slot];
            // An empty stage's cut is NaN, and nothing is below it.
            if !(elapsed >= self.min_runtime && beat.progress_rate < cuts[s]) {
                continue;
            }
            if tasks.copyable(live.task[slot] as usize) != Some(1) {
                continue;
            }
            let rate = beat.progress_rate;
            let progress = if beat.progress.is_nan() {
                0.0
            } else {
                beat.progress
            };
            let time_left = if rate == 0.0 {
                f64::INFINITY
            } else {
                (1.0 - progress) / rate
            };
            // Hadoop's "too late to speculate": a fresh copy must be expected to finish
            // first. With no success yet there is no estimate, and the copy is allowed.
            let median = medians[s];
            let benefit = time_left.partial_cmp(&median) == Some(std::cmp::Ordering::Greater);
            if self.require_benefit && view.stages[s].successes > 0 && !benefit {
                continue;
            }
            picks.push(Pick::new(live, slot, elapsed, median, time_left));
        }
        if let Some(slots) = ctx.slots {
            let cap = self.cap(slots);
            let room = cap.saturating_sub(view.speculative_running) as usize;
            if picks.len() > room {
                // Keep the most urgent (a selection); `Candidates::from_picks` orders them.
                if room > 0 {
                    picks.select_nth_unstable_by(room - 1, by_urgency);
                }
                picks.truncate(room);
            }
        }
        picks
    }

    /// Nodes whose running attempts' mean progress rate is below the `slow_node_quantile`
    /// of the nodes' means, ascending.
    pub fn slow_nodes(&self, view: &View<'_>) -> Vec<u32> {
        let live = view.live;
        // Summed in the order (stage, task, attempt) so that every implementation that sums
        // in that order gets the same means to the last bit.
        let mut rows: Vec<(u32, u32, u32, u32, f64)> = (0..live.len())
            .filter(|&slot| Self::counts(view, slot))
            .map(|slot| {
                (
                    live.node[slot],
                    live.stage[slot],
                    live.task[slot],
                    live.attempt[slot],
                    live.beat[slot].progress_rate,
                )
            })
            .collect();
        rows.sort_unstable_by_key(|r| (r.0, r.1, r.2, r.3));
        let mut nodes: Vec<(u32, f64)> = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let node = rows[i].0;
            let (mut sum, mut count) = (0.0, 0usize);
            while i < rows.len() && rows[i].0 == node {
                sum += rows[i].4;
                count += 1;
                i += 1;
            }
            nodes.push((node, sum / count as f64));
        }
        if nodes.is_empty() {
            return Vec::new();
        }
        let mut means: Vec<f64> = nodes.iter().map(|n| n.1).collect();
        let cut = linear_quantile(&mut means, self.slow_node_quantile);
        nodes
            .into_iter()
            .filter(|n| n.1 < cut)
            .map(|n| n.0)
            .collect()
    }
}
