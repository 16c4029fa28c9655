//! The attempt table: tasks (every task ever added, a few bytes each) and the live attempts
//! (struct of arrays, one row per running attempt, swap-removed when it ends).

use std::collections::TryReserveError;

use crate::error::{Error, Result};

/// Marks an attempt id whose attempt has ended (it has no row in the live table).
pub const ENDED: u32 = u32::MAX;

// A task's state word: its running attempts in the low bits, three flags on top, so that a
// check reads one word per candidate.
const DONE: u32 = 1 << 31;
const SPECULATABLE: u32 = 1 << 30;
/// Ended without success for good (`Detector::drop_task`): no more attempts, out of its
/// stage's size. Never set together with `DONE`, nor while attempts run.
const DROPPED: u32 = 1 << 29;
const RUNNING: u32 = DROPPED - 1;

/// One entry per task, dense ids from 0.
#[derive(Debug, Default, Clone)]
pub struct Tasks {
    pub stage: Vec<u32>,
    /// Input bytes; negative means unknown.
    pub input_bytes: Vec<i64>,
    /// Attempts of the task started so far (retry count = started − 1).
    pub started: Vec<u32>,
    /// Id of the newest attempt (meaningful once `started > 0`).
    pub newest: Vec<u32>,
    /// Running attempts and the flags (see `DONE`, `SPECULATABLE`, `DROPPED`).
    state: Vec<u32>,
}

impl Tasks {
    pub fn len(&self) -> usize {
        self.stage.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stage.is_empty()
    }

    /// Room for `n` more tasks, or an error if memory cannot be had (nothing is changed).
    pub fn try_reserve(&mut self, n: usize) -> std::result::Result<(), TryReserveError> {
        self.stage.try_reserve(n)?;
        self.input_bytes.try_reserve(n)?;
        self.started.try_reserve(n)?;
        self.newest.try_reserve(n)?;
        self.state.try_reserve(n)
    }

    pub fn push(&mut self, stage: u32, input_bytes: i64, speculatable: bool) -> u32 {
        let id = self.stage.len() as u32;
        self.stage.push(stage);
        self.input_bytes.push(input_bytes);
        self.started.push(0);
        self.newest.push(ENDED);
        self.state.push(if speculatable { SPECULATABLE } else { 0 });
        id
    }

    /// The task's index, or `KeyError` for an id that was never handed out.
    pub fn index(&self, task: i64) -> Result<usize> {
        if task >= 0 && (task as u64) < self.len() as u64 {
            Ok(task as usize)
        } else {
            Err(Error::key("task", task))
        }
    }

    pub fn is_done(&self, task: usize) -> bool {
        self.state[task] & DONE != 0
    }

    pub fn set_done(&mut self, task: usize) {
        self.state[task] |= DONE;
    }

    pub fn is_dropped(&self, task: usize) -> bool {
        self.state[task] & DROPPED != 0
    }

    /// Marks a task that ended without success for good; the caller checked that it has
    /// neither succeeded nor running attempts.
    pub fn set_dropped(&mut self, task: usize) {
        self.state[task] |= DROPPED;
    }

    pub fn is_speculatable(&self, task: usize) -> bool {
        self.state[task] & SPECULATABLE != 0
    }

    /// Attempts of the task running now.
    pub fn running(&self, task: usize) -> u32 {
        self.state[task] & RUNNING
    }

    /// One more running attempt. At most 2^29 − 1 at once: the caller checks `running`.
    pub fn add_running(&mut self, task: usize) {
        self.state[task] += 1;
    }

    pub fn remove_running(&mut self, task: usize) {
        self.state[task] -= 1;
    }

    /// The state word: `running` and the flags, for a check's hot loop.
    #[inline]
    pub fn copyable(&self, task: usize) -> Option<u32> {
        let state = self.state[task];
        (state & DONE == 0 && state & SPECULATABLE != 0).then_some(state & RUNNING)
    }

    pub fn memory_bytes(&self) -> usize {
        self.stage.capacity() * 4
            + self.input_bytes.capacity() * 8
            + self.started.capacity() * 4
            + self.newest.capacity() * 4
            + self.state.capacity() * 4
    }
}

/// The latest heartbeat of a running attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beat {
    /// Time of the latest heartbeat (the start until the first one).
    pub at: f64,
    /// Latest reported progress in [0, 1]; NaN until one is reported.
    pub progress: f64,
    /// Progress per second up to the latest heartbeat that carried progress:
    /// `progress / (that heartbeat's time − start)`; 0 until then or while that time is the
    /// start. Computed when the heartbeat arrives, so a check does no division.
    pub progress_rate: f64,
    /// Records per second likewise, from the latest heartbeat that carried records.
    pub record_rate: f64,
}

impl Beat {
    fn new(start: f64) -> Beat {
        Beat {
            at: start,
            progress: f64::NAN,
            progress_rate: 0.0,
            record_rate: 0.0,
        }
    }
}

/// The running attempts, one row (a "slot") each. `slot_of[attempt]` finds the row of an
/// attempt id; an ended attempt keeps only that 4-byte entry, set to `ENDED`.
#[derive(Debug, Default, Clone)]
pub struct Live {
    pub attempt: Vec<u32>,
    pub task: Vec<u32>,
    pub stage: Vec<u32>,
    pub node: Vec<u32>,
    pub start: Vec<f64>,
    /// What the heartbeats said, one row per attempt: a heartbeat touches one cache line.
    pub beat: Vec<Beat>,
    /// Whether another attempt of the task was running when this one started.
    pub speculative: Vec<bool>,
    pub slot_of: Vec<u32>,
}

impl Live {
    pub fn len(&self) -> usize {
        self.attempt.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attempt.is_empty()
    }

    /// The row of a running attempt: `KeyError` for an id never handed out, `ValueError` for
    /// one that has ended.
    pub fn slot(&self, attempt: i64) -> Result<usize> {
        self.slot_if_running(attempt)?
            .ok_or_else(|| Error::value("attempt", format!("{attempt} has already finished")))
    }

    /// The row of an attempt, `None` once it has ended; `KeyError` for an unknown id.
    pub fn slot_if_running(&self, attempt: i64) -> Result<Option<usize>> {
        if attempt < 0 || attempt as u64 >= self.slot_of.len() as u64 {
            return Err(Error::key("attempt", attempt));
        }
        Ok(match self.slot_of[attempt as usize] {
            ENDED => None,
            slot => Some(slot as usize),
        })
    }

    /// Asks the processor to fetch the rows of `attempt` into cache ahead of use: a batch
    /// touches rows in random order, and fetching a few rows ahead overlaps the misses.
    #[inline]
    pub fn prefetch(&self, attempt: i64) {
        let Some(&slot) = usize::try_from(attempt)
            .ok()
            .and_then(|a| self.slot_of.get(a))
        else {
            return;
        };
        self.prefetch_slot(slot as usize);
    }

    /// `prefetch` for a row already found.
    #[inline]
    pub fn prefetch_slot(&self, slot: usize) {
        if slot < self.beat.len() {
            prefetch(&self.beat[slot]);
            prefetch(&self.start[slot]);
        }
    }

    /// The first of `count` new attempt ids, or an error once the id space would run out.
    pub fn next_ids(&self, count: usize) -> Result<u32> {
        let first = self.slot_of.len() as u64;
        if first + count as u64 >= ENDED as u64 {
            return Err(Error::value(
                "attempt",
                format!("ids are exhausted ({first} attempts started)"),
            ));
        }
        Ok(first as u32)
    }

    pub fn push(&mut self, task: u32, stage: u32, node: u32, start: f64, speculative: bool) -> u32 {
        let id = self.slot_of.len() as u32;
        self.slot_of.push(self.attempt.len() as u32);
        self.attempt.push(id);
        self.task.push(task);
        self.stage.push(stage);
        self.node.push(node);
        self.start.push(start);
        self.beat.push(Beat::new(start));
        self.speculative.push(speculative);
        id
    }

    /// Ends the attempt in `slot`: the last row moves into its place.
    pub fn remove(&mut self, slot: usize) {
        let ended = self.attempt[slot] as usize;
        self.attempt.swap_remove(slot);
        self.task.swap_remove(slot);
        self.stage.swap_remove(slot);
        self.node.swap_remove(slot);
        self.start.swap_remove(slot);
        self.beat.swap_remove(slot);
        self.speculative.swap_remove(slot);
        self.slot_of[ended] = ENDED;
        if slot < self.attempt.len() {
            let moved = self.attempt[slot] as usize;
            self.slot_of[moved] = slot as u32;
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.attempt.capacity() * 4
            + self.task.capacity() * 4
            + self.stage.capacity() * 4
            + self.node.capacity() * 4
            + self.start.capacity() * 8
            + self.beat.capacity() * std::mem::size_of::<Beat>()
            + self.speculative.capacity()
    }

    /// Bytes of the attempt-id index: 4 per attempt ever started, ended ones included.
    pub fn index_bytes(&self) -> usize {
        self.slot_of.capacity() * 4
    }
}

#[inline(always)]
fn prefetch<T>(at: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults and changes no memory. SSE is part of
    // every x86-64 target.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((at as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_moves_the_last_row_and_keeps_the_index() {
        let mut live = Live::default();
        let a = live.push(0, 0, 0, 1.0, false);
        let b = live.push(1, 0, 0, 2.0, false);
        let c = live.push(2, 0, 0, 3.0, false);
        live.remove(live.slot(a as i64).unwrap());
        assert_eq!(live.len(), 2);
        assert_eq!(live.start[live.slot(c as i64).unwrap()], 3.0);
        assert_eq!(live.start[live.slot(b as i64).unwrap()], 2.0);
        assert!(matches!(live.slot(a as i64), Err(Error::Value(_))));
        assert!(matches!(live.slot(7), Err(Error::Key { .. })));
        assert!(matches!(live.slot(-1), Err(Error::Key { .. })));
        live.remove(live.slot(c as i64).unwrap());
        live.remove(live.slot(b as i64).unwrap());
        assert!(live.is_empty());
    }

    #[test]
    fn task_flags() {
        let mut tasks = Tasks::default();
        let t = tasks.push(0, -1, false) as usize;
        assert!(!tasks.is_speculatable(t) && !tasks.is_done(t));
        tasks.set_done(t);
        assert!(tasks.is_done(t));
        let u = tasks.push(0, 5, true) as usize;
        tasks.add_running(u);
        tasks.remove_running(u);
        tasks.set_dropped(u);
        assert!(tasks.is_dropped(u) && !tasks.is_done(u) && tasks.is_speculatable(u));
        assert_eq!(tasks.running(u), 0);
        assert!(!tasks.is_dropped(t));
        assert!(tasks.index(2).is_err() && tasks.index(-3).is_err() && tasks.index(1).is_ok());
    }
}
