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
}

impl Default for Late {
    fn default() -> Late {
        Late {
            slow_task_quantile: 0.25,
            speculative_cap: 0.1,
            slow_node_quantile: 0.25,
            min_runtime: 60.0,
            require_benefit: true,
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

    /// Slots of the running attempts of not-done tasks, grouped by stage (a counting sort:
    /// linear in the attempts), with each group's start in `offsets`.
    fn by_stage(view: &View<'_>) -> (Vec<usize>, Vec<usize>) {
        let (live, tasks) = (view.live, view.tasks);
        let mut offsets = vec![0usize; view.stages.len() + 1];
        for slot in 0..live.len() {
            if !tasks.is_done(live.task[slot] as usize) {
                offsets[live.stage[slot] as usize + 1] += 1;
            }
        }
        for s in 0..view.stages.len() {
            offsets[s + 1] += offsets[s];
        }
        let mut next = offsets.clone();
        let mut slots = vec![0usize; offsets[view.stages.len()]];
        for slot in 0..live.len() {
            if !tasks.is_done(live.task[slot] as usize) {
                let s = live.stage[slot] as usize;
                slots[next[s]] = slot;
                next[s] += 1;
            }
        }
        (slots, offsets)
    }

    pub(super) fn picks(&self, view: &View<'_>, ctx: Context) -> Vec<Pick> {
        let (live, tasks) = (view.live, view.tasks);
        let (grouped, offsets) = Self::by_stage(view);
        let mut rates = Vec::new();
        // Urgency is the estimated time left.
        let mut picks: Vec<Pick> = Vec::new();
        for (s, stage) in view.stages.iter().enumerate() {
            let group = &grouped[offsets[s]..offsets[s + 1]];
            if group.is_empty() {
                continue;
            }
            rates.clear();
            rates.extend(group.iter().map(|&slot| live.beat[slot].progress_rate));
            // A selection, not a sort: linear in the stage's running attempts.
            let cut = linear_quantile(&mut rates, self.slow_task_quantile);
            let median = stage
                .durations
                .quantile(0.5, Method::Linear)
                .unwrap_or(f64::NAN);
            for &slot in group {
                let task = live.task[slot] as usize;
                let elapsed = ctx.now - live.start[slot];
                let rate = live.beat[slot].progress_rate;
                let slow = elapsed >= self.min_runtime && rate < cut;
                if !slow || tasks.copyable(task) != Some(1) {
                    continue;
                }
                let progress = live.beat[slot].progress;
                let progress = if progress.is_nan() { 0.0 } else { progress };
                let time_left = if rate == 0.0 {
                    f64::INFINITY
                } else {
                    (1.0 - progress) / rate
                };
                // Hadoop's "too late to speculate": a fresh copy must be expected to finish
                // first. With no success yet there is no estimate, and the copy is allowed.
                let sooner = time_left.partial_cmp(&median) == Some(std::cmp::Ordering::Greater);
                if self.require_benefit && stage.successes > 0 && !sooner {
                    continue;
                }
                picks.push(Pick::new(live, slot, elapsed, median, time_left));
            }
        }
        if let Some(slots) = ctx.slots {
            let cap = (self.speculative_cap * slots as f64).floor() as u64;
            let room = cap.saturating_sub(view.speculative_running) as usize;
            if picks.len() > room {
                // Keep the most urgent; `Candidates::from_picks` orders what is kept.
                picks.sort_unstable_by(by_urgency);
                picks.truncate(room);
            }
        }
        picks
    }

    /// Nodes whose running attempts' mean progress rate is below the `slow_node_quantile`
    /// of the nodes' means, ascending.
    pub fn slow_nodes(&self, view: &View<'_>) -> Vec<u32> {
        let (live, tasks) = (view.live, view.tasks);
        // Summed in the order (stage, task, attempt) so that every implementation that sums
        // in that order gets the same means to the last bit.
        let mut rows: Vec<(u32, u32, u32, u32, f64)> = (0..live.len())
            .filter(|&slot| !tasks.is_done(live.task[slot] as usize))
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
