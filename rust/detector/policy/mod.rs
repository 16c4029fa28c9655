//! The speculation policies. Each one reads the attempt table and the stage statistics and
//! names the attempts to copy now; none of them changes anything.

pub mod flink;
pub mod late;
pub mod mantri;
pub mod smallpond;
pub mod spark;

use super::stage::Stage;
use super::table::{Live, Tasks};

pub use flink::Flink;
pub use late::Late;
pub use mantri::Mantri;
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
    Mantri(Mantri),
}

/// The state a policy reads.
pub struct View<'a> {
    pub tasks: &'a Tasks,
    pub live: &'a Live,
    /// The stages that have running attempts (the only ones a check needs), in the order of
    /// `live_index`; per-stage numbers of a check are laid out the same way.
    pub stages: Vec<&'a Stage>,
    /// Per stage id, the position of a live stage in `stages`.
    pub live_index: &'a [u32],
    /// Running attempts that started while another attempt of their task ran.
    pub speculative_running: u64,
    /// Running attempts whose task has already succeeded (losers not yet ended).
    pub done_running: u64,
}

impl View<'_> {
    /// The position in `stages` of the stage of a running attempt.
    #[inline]
    pub fn at(&self, stage: u32) -> usize {
        self.live_index[stage as usize] as usize
    }
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

/// One attempt chosen for a copy, with the columns it will be reported with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    pub task: u32,
    pub attempt: u32,
    pub stage: u32,
    pub node: u32,
    pub elapsed: f64,
    pub threshold: f64,
    /// Larger is more urgent.
    pub urgency: f64,
    /// What to do with the attempt: `mantri::COPY` (every other policy) or `mantri::RESTART`.
    pub action: u8,
}

impl Pick {
    /// Reads the attempt's columns now, while `slot` is near the rows just scanned.
    pub fn new(live: &Live, slot: usize, elapsed: f64, threshold: f64, urgency: f64) -> Pick {
        Pick {
            task: live.task[slot],
            attempt: live.attempt[slot],
            stage: live.stage[slot],
            node: live.node[slot],
            elapsed,
            threshold,
            urgency,
            action: mantri::COPY,
        }
    }
}

/// Most urgent first, ties by task id.
pub fn by_urgency(a: &Pick, b: &Pick) -> std::cmp::Ordering {
    b.urgency.total_cmp(&a.urgency).then(a.task.cmp(&b.task))
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
    /// 0: start a copy beside the attempt; 1: kill the attempt and start a new one (Mantri's
    /// restart). Always 0 for the other policies.
    pub action: Vec<u8>,
}

impl Candidates {
    pub fn len(&self) -> usize {
        self.task.len()
    }

    pub fn is_empty(&self) -> bool {
        self.task.is_empty()
    }

    /// Orders the picks (most urgent first, ties by task id) and lays them out as columns.
    /// Sorts compact keys rather than whole picks: the answer can hold many rows.
    pub fn from_picks(picks: Vec<Pick>) -> Candidates {
        let mut order: Vec<(f64, u32, u32)> = picks
            .iter()
            .enumerate()
            .map(|(i, p)| (p.urgency, p.task, i as u32))
            .collect();
        order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out = Candidates {
            task: Vec::with_capacity(order.len()),
            attempt: Vec::with_capacity(order.len()),
            stage: Vec::with_capacity(order.len()),
            node: Vec::with_capacity(order.len()),
            elapsed: Vec::with_capacity(order.len()),
            threshold: Vec::with_capacity(order.len()),
            action: Vec::with_capacity(order.len()),
        };
        for &(_, _, i) in &order {
            let p = &picks[i as usize];
            out.task.push(p.task);
            out.attempt.push(p.attempt);
            out.stage.push(p.stage);
            out.node.push(p.node);
            out.elapsed.push(p.elapsed);
            out.threshold.push(p.threshold);
            out.action.push(p.action);
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
            Policy::Mantri(mantri) => mantri.picks(view, ctx),
        };
        Candidates::from_picks(picks)
    }
}

/// The one pass over every running attempt that a check makes: for each attempt whose
/// elapsed time passes its stage's cutoff (`>=` when `inclusive`, else `>`), `pick` decides
/// (given the slot and the elapsed time). `cutoff` is laid out like `View::stages`. A large
/// table is split across the machine's cores; the answer is the same, in slot order.
pub fn scan<F>(view: &View<'_>, now: f64, cutoff: &[f64], inclusive: bool, pick: F) -> Vec<Pick>
where
    F: Fn(usize, f64) -> Option<Pick> + Sync,
{
    const PER_THREAD: usize = 1 << 18;
    let (live, index) = (view.live, view.live_index);
    let n = live.len();
    // Asked only for a table worth splitting: on Linux the answer reads cgroup files, which
    // costs more than a check of a small table.
    let threads = match n / PER_THREAD {
        0 | 1 => 1,
        parts => std::thread::available_parallelism().map_or(1, |p| p.get().min(parts)),
    };
    if threads == 1 {
        return scan_range(live, index, now, cutoff, inclusive, &pick, 0, n);
    }
    let chunk = n.div_ceil(threads);
    let pick = &pick;
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..threads)
            .map(|i| {
                let (lo, hi) = (i * chunk, ((i + 1) * chunk).min(n));
                scope.spawn(move || scan_range(live, index, now, cutoff, inclusive, pick, lo, hi))
            })
            .collect();
        let mut picks = Vec::new();
        for part in parts {
            // A scan of plain slices does not panic; should a thread fail anyway, the serial
            // scan gives the same answer.
            match part.join() {
                Ok(found) => picks.extend(found),
                Err(_) => return scan_range(live, index, now, cutoff, inclusive, pick, 0, n),
            }
        }
        picks
    })
}

#[allow(clippy::too_many_arguments)]
fn scan_range<F>(
    live: &Live,
    index: &[u32],
    now: f64,
    cutoff: &[f64],
    inclusive: bool,
    pick: &F,
    lo: usize,
    hi: usize,
) -> Vec<Pick>
where
    F: Fn(usize, f64) -> Option<Pick>,
{
    let mut picks = Vec::new();
    let (start, stage) = (&live.start[lo..hi], &live.stage[lo..hi]);
    for (i, (&start, &stage)) in start.iter().zip(stage).enumerate() {
        let elapsed = now - start;
        let cut = cutoff[index[stage as usize] as usize];
        if elapsed > cut || (inclusive && elapsed == cut) {
            if let Some(p) = pick(lo + i, elapsed) {
                picks.push(p);
            }
        }
    }
    picks
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
