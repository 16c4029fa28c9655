//! The speculation policies. Each one reads the attempt table and the stage statistics and
//! names the attempts to copy now; none of them changes anything.

pub mod flink;
pub mod late;
pub mod smallpond;
pub mod spark;

use super::stage::Stage;
use super::table::{Live, Tasks};

pub use flink::Flink;
pub use late::Late;
pub use smallpond::Smallpond;
pub use spark::Spark;

/// What the Detector decides with.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// Never speculate (the baseline).
    Never,
    Spark(Spark),
    Flink(Flink),
    Smallpond(Smallpond),
    Late(Late),
}

/// The state a policy reads.
pub struct View<'a> {
    pub tasks: &'a Tasks,
    pub live: &'a Live,
    pub stages: &'a [Stage],
    /// Running attempts that started while another attempt of their task ran.
    pub speculative_running: u64,
}

/// The scheduler's context for one check.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: f64,
    /// Tasks waiting for a slot.
    pub pending: u64,
    /// Total slots, when the scheduler knows them.
    pub slots: Option<u64>,
}

/// One attempt chosen for a copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    pub slot: usize,
    pub elapsed: f64,
    pub threshold: f64,
    /// Larger is more urgent.
    pub urgency: f64,
}

/// The answer of a check: equal-length columns, most urgent first, a task at most once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidates {
    pub task: Vec<u32>,
    pub attempt: Vec<u32>,
    pub stage: Vec<u32>,
    pub node: Vec<u32>,
    pub elapsed: Vec<f64>,
    pub threshold: Vec<f64>,
}

impl Candidates {
    pub fn len(&self) -> usize {
        self.task.len()
    }

    pub fn is_empty(&self) -> bool {
        self.task.is_empty()
    }

    /// Orders the picks (most urgent first, ties by task id) and lays them out as columns.
    pub fn from_picks(live: &Live, mut picks: Vec<Pick>) -> Candidates {
        picks.sort_unstable_by(|a, b| {
            b.urgency
                .total_cmp(&a.urgency)
                .then(live.task[a.slot].cmp(&live.task[b.slot]))
        });
        let mut out = Candidates::default();
        for pick in picks {
            out.task.push(live.task[pick.slot]);
            out.attempt.push(live.attempt[pick.slot]);
            out.stage.push(live.stage[pick.slot]);
            out.node.push(live.node[pick.slot]);
            out.elapsed.push(pick.elapsed);
            out.threshold.push(pick.threshold);
        }
        out
    }
}

impl Policy {
    pub fn check(&self, view: &View<'_>, ctx: Context) -> Candidates {
        let picks = match self {
            Policy::Never => Vec::new(),
            Policy::Spark(spark) => spark.picks(view, ctx),
            Policy::Flink(flink) => flink.picks(view, ctx),
            Policy::Smallpond(smallpond) => smallpond.picks(view, ctx),
            Policy::Late(late) => late.picks(view, ctx),
        };
        Candidates::from_picks(view.live, picks)
    }
}

/// Slots of the live attempts whose elapsed time passes their stage's cutoff: the one pass
/// over every running attempt that a check makes. `inclusive` picks `>=` over `>`.
pub fn over_cutoff(live: &Live, now: f64, cutoff: &[f64], inclusive: bool) -> Vec<usize> {
    let mut slots = Vec::new();
    let (start, stage) = (&live.start[..], &live.stage[..]);
    if inclusive {
        for (slot, (&start, &stage)) in start.iter().zip(stage).enumerate() {
            if now - start >= cutoff[stage as usize] {
                slots.push(slot);
            }
        }
    } else {
        for (slot, (&start, &stage)) in start.iter().zip(stage).enumerate() {
            if now - start > cutoff[stage as usize] {
                slots.push(slot);
            }
        }
    }
    slots
}

/// numpy's default (linear) quantile of `values`, bit for bit, by selection rather than a
/// sort. Reorders `values`. NaN for an empty slice.
pub fn linear_quantile(values: &mut [f64], q: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let v = (n - 1) as f64 * q;
    let lo = v.floor();
    if v >= (n - 1) as f64 {
        return values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    }
    let lo_index = lo as usize;
    let (_, &mut a, above) = values.select_nth_unstable_by(lo_index, f64::total_cmp);
    let b = above.iter().copied().fold(f64::INFINITY, f64::min);
    lerp(a, b, v - lo)
}

/// numpy's `_lerp`: from the nearer end, so that t = 1 gives b exactly.
pub fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}
