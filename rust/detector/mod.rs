//! The Detector: the attempt table, the stage statistics and a policy. Every call that needs
//! time takes `now` from the caller; nothing here reads a clock. A rejected call changes
//! nothing: each method validates everything before it writes anything.

pub mod policy;
pub mod stage;
pub mod table;

use crate::error::{py_float, Error, Result};
pub use policy::{Candidates, Context, Flink, Late, Mantri, Policy, Smallpond, Spark, View};
use stage::Stage;
use table::{Beat, Live, Tasks};

/// `now` of a batch call: one time for every row, or one per row.
#[derive(Debug, Clone, Copy)]
pub enum Times<'a> {
    One(f64),
    Each(&'a [f64]),
}

impl Times<'_> {
    #[inline]
    fn at(&self, row: usize) -> f64 {
        match self {
            Times::One(t) => *t,
            Times::Each(ts) => ts[row],
        }
    }

    fn check_len(&self, rows: usize) -> Result<()> {
        match self {
            Times::Each(ts) if ts.len() != rows => Err(length_error("now", ts.len(), rows)),
            _ => Ok(()),
        }
    }
}

/// How many rows ahead a batch asks for the rows it will touch (see `Live::prefetch`).
const PREFETCH_AHEAD: usize = 16;

/// The most tasks one `add_tasks` call may add (their rows take about 1.5 GiB); a larger
/// stage is added in parts. It keeps a mistyped `n` from exhausting memory before anything
/// else can refuse it.
pub const MAX_TASKS_PER_CALL: i64 = 1 << 26;

/// The input bytes of the tasks one `add_tasks` call adds; -1 is unknown, like Flink's
/// `NUM_BYTES_UNKNOWN`.
#[derive(Debug, Clone, Copy)]
pub enum InputBytes<'a> {
    Unknown,
    /// One count for every task (never expanded into a per-task vector).
    One(i64),
    /// One count per task.
    Each(&'a [i64]),
}

impl InputBytes<'_> {
    #[inline]
    fn at(&self, row: usize) -> i64 {
        match self {
            InputBytes::Unknown => -1,
            InputBytes::One(b) => *b,
            InputBytes::Each(bytes) => bytes[row],
        }
    }
}

fn length_error(arg: &str, got: usize, rows: usize) -> Error {
    Error::value(arg, format!("has {got} rows, expected {rows}"))
}

/// An optional per-row column must have one value per row.
fn check_column<T>(arg: &str, column: Option<&[T]>, rows: usize) -> Result<()> {
    match column {
        Some(c) if c.len() != rows => Err(length_error(arg, c.len(), rows)),
        _ => Ok(()),
    }
}

/// An attempt's clock never runs backwards: `t` may not precede its last heartbeat (or start).
fn check_not_before(attempt: i64, t: f64, last: f64) -> Result<()> {
    if t < last {
        return Err(Error::value(
            "now",
            format!(
                "{} is earlier than attempt {attempt}'s last heartbeat or start at {}",
                py_float(t),
                py_float(last)
            ),
        ));
    }
    Ok(())
}

fn finite_time(arg: &str, now: f64) -> Result<f64> {
    if now.is_finite() {
        Ok(now)
    } else {
        Err(Error::value(
            arg,
            format!("must be a finite time, got {}", py_float(now)),
        ))
    }
}

fn check_progress(progress: f64) -> Result<()> {
    if (0.0..=1.0).contains(&progress) {
        Ok(())
    } else {
        Err(Error::value(
            "progress",
            format!("must be in [0, 1], got {}", py_float(progress)),
        ))
    }
}

fn check_records(records: f64) -> Result<()> {
    if records.is_finite() && records >= 0.0 {
        Ok(())
    } else {
        Err(Error::value(
            "records",
            format!("must be a finite count >= 0, got {}", py_float(records)),
        ))
    }
}

fn node_id(node: i64) -> Result<u32> {
    u32::try_from(node)
        .ok()
        .filter(|n| *n != u32::MAX)
        .ok_or_else(|| Error::value("node", format!("must be in [0, 2**32 - 1), got {node}")))
}

/// Read-only numbers of one stage, for schedulers and reports.
#[derive(Debug, Clone, PartialEq)]
pub struct StageStats {
    pub name: Option<String>,
    pub num_tasks: Option<u64>,
    pub tasks: u64,
    /// Tasks dropped (`Detector::drop_task`); they are among `tasks`.
    pub dropped: u64,
    pub successes: u64,
    pub running: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Marks a stage without running attempts in `Detector::live_index`.
const NOT_LIVE: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub struct Detector {
    policy: Policy,
    /// Every stage ever added, by id; `None` once removed (8 bytes left of it).
    stages: Vec<Option<Box<Stage>>>,
    /// The stages that have running attempts: a check looks at these only, so its cost
    /// follows the live stages, not every stage ever added.
    live_stages: Vec<u32>,
    /// Per stage id, its position in `live_stages` (`NOT_LIVE` when it has none running).
    live_index: Vec<u32>,
    tasks: Tasks,
    live: Live,
    /// Running attempts that started while another attempt of their task ran.
    speculative_running: u64,
    /// Running attempts whose task has already succeeded (losers not yet ended).
    done_running: u64,
}

impl Detector {
    pub fn new(policy: Policy) -> Result<Detector> {
        match &policy {
            Policy::Never => {}
            Policy::Spark(p) => p.validate()?,
            Policy::Flink(p) => p.validate()?,
            Policy::Smallpond(p) => p.validate()?,
            Policy::Late(p) => p.validate()?,
            Policy::Mantri(p) => p.validate()?,
        }
        Ok(Detector {
            policy,
            stages: Vec::new(),
            live_stages: Vec::new(),
            live_index: Vec::new(),
            tasks: Tasks::default(),
            live: Live::default(),
            speculative_running: 0,
            done_running: 0,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The stage's index, or `KeyError` for an id never handed out or removed.
    fn stage_index(&self, stage: i64) -> Result<usize> {
        match usize::try_from(stage).ok().and_then(|s| self.stages.get(s)) {
            Some(Some(_)) => Ok(stage as usize),
            _ => Err(Error::key("stage", stage)),
        }
    }

    fn stage_mut(&mut self, stage: i64) -> Result<&mut Stage> {
        let s = self.stage_index(stage)?;
        self.stages[s]
            .as_deref_mut()
            .ok_or_else(|| Error::key("stage", stage))
    }

    /// The task's index, or `KeyError` for an id never handed out or of a removed stage.
    fn task_index(&self, task: i64) -> Result<usize> {
        let t = self.tasks.index(task)?;
        match self.stages.get(self.tasks.stage[t] as usize) {
            Some(Some(_)) => Ok(t),
            _ => Err(Error::key("task", task)),
        }
    }

    /// One more running attempt in stage `s` (which exists: its task was validated).
    fn add_running_to_stage(&mut self, s: usize) {
        if let Some(stage) = self.stages[s].as_deref_mut() {
            stage.running += 1;
            if stage.running == 1 {
                self.live_index[s] = self.live_stages.len() as u32;
                self.live_stages.push(s as u32);
            }
        }
    }

    fn remove_running_from_stage(&mut self, s: usize) {
        if let Some(stage) = self.stages[s].as_deref_mut() {
            stage.running -= 1;
            if stage.running == 0 {
                let at = self.live_index[s] as usize;
                self.live_stages.swap_remove(at);
                if let Some(&moved) = self.live_stages.get(at) {
                    self.live_index[moved as usize] = at as u32;
                }
                self.live_index[s] = NOT_LIVE;
            }
        }
    }

    /// Forgets a stage the scheduler is done with, releasing its statistics. Its id, and
    /// its tasks' ids, are unknown afterwards (`KeyError`); its attempts, all ended, stay
    /// ended attempts (a late heartbeat is ignored, a second finish is a `ValueError`), since
    /// recognising them would cost 4 bytes per attempt ever started. A stage with running
    /// attempts is refused (`ValueError` naming it) and stays as it was: removing it would
    /// leave those attempts without statistics to be judged by.
    pub fn remove_stage(&mut self, stage: i64) -> Result<()> {
        let s = self.stage_index(stage)?;
        let running = self.stages[s].as_ref().map_or(0, |st| st.running);
        if running > 0 {
            return Err(Error::value(
                "stage",
                format!("{stage} has {running} running attempts; end them before removing it"),
            ));
        }
        self.stages[s] = None;
        Ok(())
    }

    /// Says that a task ended without success and will get no more attempts: its Future
    /// was cancelled before it ran, or it failed for good (its retries are spent). The task
    /// then leaves its stage's size, the denominator of the gates that compare successes
    /// with the size: Spark's `successes >= max(floor(quantile × n), 1)` and its one-task
    /// and few-tasks rules, and Flink's `finished / n >= baseline_ratio` and
    /// `N = round(n × baseline_ratio)`, where n is now the declared `num_tasks` (or, for an
    /// open-ended stage, the tasks added so far) less the dropped tasks. A dropped task of
    /// unknown input bytes no longer stops Flink's rule from comparing time per byte.
    /// smallpond (`min_samples` successes), LATE and Mantri never read the size; for them a
    /// drop changes nothing but that the task is never started again.
    ///
    /// How the peers count, and why they need no such call: Spark's `TaskSetManager` fixes
    /// `numTasks` (the task set's length) and `minFinishedForSpeculation` from it when the
    /// task set is built, and `checkSpeculatableTasks` compares the successful durations'
    /// count with it; a killed attempt (`TaskKilled`) goes back to the pending tasks, and a
    /// task that fails `maxTaskFailures` times calls `abort`, which makes the whole task set
    /// a zombie, for which `checkSpeculatableTasks` returns at once; a cancelled stage's task
    /// sets are aborted the same way (`TaskSchedulerImpl.cancelTasks`) and removed once
    /// their last attempt ends. Flink's `ExecutionTimeBasedSlowTaskDetector` divides the
    /// FINISHED execution vertices by all of the job vertex's task vertices and takes N from
    /// its parallelism; a vertex that failed for good fails the job. So in both an
    /// unsuccessful task never shrinks a stage that goes on; here the job goes on (a
    /// cancelled Future or a failed task does not end it), and the stage's other tasks must
    /// still be judged.
    ///
    /// Errors, and a refused call changes nothing: an unknown task id, or one of a removed
    /// stage, is `KeyError`; a task that has succeeded, that was dropped already, or that
    /// has running attempts (end them with `finish(ok=false)` first) is `ValueError` naming
    /// it. After the drop, `start` of the task is a `ValueError`, `task_done` is false and
    /// `stage_stats` counts it in `dropped`.
    pub fn drop_task(&mut self, task: i64) -> Result<()> {
        let t = self.task_index(task)?;
        if self.tasks.is_done(t) {
            return Err(Error::value(
                "task",
                format!(
                    "{task} has already succeeded; only a task that will never succeed is dropped"
                ),
            ));
        }
        if self.tasks.is_dropped(t) {
            return Err(Error::value("task", format!("{task} was already dropped")));
        }
        let running = self.tasks.running(t);
        if running > 0 {
            return Err(Error::value(
                "task",
                format!(
                    "{task} still has {running} running attempt(s); end them with \
                     finish(ok=False) before dropping it"
                ),
            ));
        }
        let s = self.tasks.stage[t] as usize;
        let bytes = self.tasks.input_bytes[t];
        let Some(stage) = self.stages[s].as_deref_mut() else {
            return Err(Error::key("task", task));
        };
        stage.drop_task(bytes);
        self.tasks.set_dropped(t);
        Ok(())
    }

    pub fn add_stage(&mut self, num_tasks: Option<i64>, name: Option<String>) -> Result<u32> {
        let declared = match num_tasks {
            None => None,
            Some(n) if n >= 1 => Some(n as u64),
            Some(n) => {
                return Err(Error::value(
                    "num_tasks",
                    format!("must be at least 1, got {n}"),
                ))
            }
        };
        if self.stages.len() >= u32::MAX as usize {
            return Err(Error::value("stage", "ids are exhausted"));
        }
        let id = self.stages.len();
        self.stages
            .push(Some(Box::new(Stage::new(declared, name)?)));
        self.live_index.push(NOT_LIVE);
        Ok(id as u32)
    }

    pub fn add_task(&mut self, stage: i64, input_bytes: i64, speculatable: bool) -> Result<u32> {
        self.add_tasks(stage, 1, InputBytes::One(input_bytes), speculatable)
    }

    /// Adds `n` tasks to a stage and returns the first id (the ids are consecutive).
    /// `n` is checked against the stage's room and `MAX_TASKS_PER_CALL` before anything is
    /// allocated, and the task table grows by a fallible reservation: a huge `n` is a
    /// `ValueError`, never an aborted process.
    pub fn add_tasks(
        &mut self,
        stage: i64,
        n: i64,
        input_bytes: InputBytes<'_>,
        speculatable: bool,
    ) -> Result<u32> {
        let s = self.stage_index(stage)?;
        if n < 0 {
            return Err(Error::Value(format!("n must be >= 0, got n={n}")));
        }
        if n > MAX_TASKS_PER_CALL {
            return Err(Error::Value(format!(
                "n={n} is more tasks than one call may add ({MAX_TASKS_PER_CALL}); add them in parts"
            )));
        }
        if let InputBytes::Each(bytes) = input_bytes {
            if bytes.len() as u64 != n as u64 {
                return Err(Error::Value(format!(
                    "input_bytes has {} rows, expected n={n}",
                    bytes.len()
                )));
            }
        }
        let bad = match input_bytes {
            InputBytes::Unknown => None,
            InputBytes::One(b) => (b < -1).then_some(b),
            InputBytes::Each(bytes) => bytes.iter().copied().find(|b| *b < -1),
        };
        if let Some(bad) = bad {
            return Err(Error::value(
                "input_bytes",
                format!("must be >= 0, or -1 for unknown, got {bad}"),
            ));
        }
        self.stage_mut(stage)?.check_room(s, n as u64)?;
        if self.tasks.len() as u64 + n as u64 >= u32::MAX as u64 {
            return Err(Error::Value(format!(
                "n={n}: that many more tasks exhaust the task ids ({} added)",
                self.tasks.len()
            )));
        }
        self.tasks.try_reserve(n as usize).map_err(|_| {
            Error::Value(format!(
                "n={n}: the task table cannot grow by that many rows"
            ))
        })?;
        let first = self.tasks.len() as u32;
        let Some(target) = self.stages[s].as_deref_mut() else {
            return Err(Error::key("stage", stage));
        };
        for i in 0..n as usize {
            let bytes = input_bytes.at(i);
            self.tasks.push(s as u32, bytes, speculatable);
            target.add_task(bytes);
        }
        Ok(first)
    }

    pub fn num_tasks(&self) -> usize {
        self.tasks.len()
    }

    pub fn num_running(&self) -> usize {
        self.live.len()
    }

    fn startable(&self, task: i64) -> Result<usize> {
        let t = self.task_index(task)?;
        if self.tasks.is_done(t) {
            return Err(Error::value(
                "task",
                format!("{task} has already succeeded"),
            ));
        }
        if self.tasks.is_dropped(t) {
            return Err(Error::value(
                "task",
                format!("{task} was dropped; it gets no more attempts"),
            ));
        }
        // Far beyond any real job; it keeps the running count within its bits.
        if self.tasks.running(t) >= 1 << 20 {
            return Err(Error::value(
                "task",
                format!("{task} has too many running attempts"),
            ));
        }
        Ok(t)
    }

    pub fn start(&mut self, task: i64, now: f64, node: i64) -> Result<u32> {
        let first = self.start_many(&[task], Times::One(now), Some(&[node]))?;
        Ok(first)
    }

    /// Starts one attempt per row; returns the first attempt id (the ids are consecutive).
    pub fn start_many(
        &mut self,
        tasks: &[i64],
        now: Times<'_>,
        nodes: Option<&[i64]>,
    ) -> Result<u32> {
        let rows = tasks.len();
        now.check_len(rows)?;
        check_column("nodes", nodes, rows)?;
        for (row, &task) in tasks.iter().enumerate() {
            self.startable(task)?;
            finite_time("now", now.at(row))?;
            if let Some(nodes) = nodes {
                node_id(nodes[row])?;
            }
        }
        let first = self.live.next_ids(rows)?;
        for (row, &task) in tasks.iter().enumerate() {
            let t = task as usize;
            let node = nodes.map_or(0, |n| n[row] as u32);
            let speculative = self.tasks.running(t) > 0;
            let stage = self.tasks.stage[t];
            let id = self
                .live
                .push(t as u32, stage, node, now.at(row), speculative);
            self.speculative_running += u64::from(speculative);
            self.tasks.add_running(t);
            self.tasks.started[t] = self.tasks.started[t].saturating_add(1);
            self.tasks.newest[t] = id;
            self.add_running_to_stage(stage as usize);
        }
        Ok(first)
    }

    /// Records heartbeats; rows apply in order, so a later row of the same attempt must not
    /// go back in time. `progress` and `records` are per row when given.
    pub fn heartbeat_many(
        &mut self,
        attempts: &[i64],
        now: Times<'_>,
        progress: Option<&[f64]>,
        records: Option<&[f64]>,
    ) -> Result<()> {
        let rows = attempts.len();
        now.check_len(rows)?;
        check_column("progress", progress, rows)?;
        check_column("records", records, rows)?;
        // A row of an attempt that has already ended passes the value checks and is then
        // ignored: a worker's last heartbeat may well arrive after its finish.
        if let Times::One(t) = now {
            // One time for every row: rows of one attempt cannot go back in time among
            // themselves, so a read-only pass validates (and finds the rows), a second writes.
            let slots = self.check_beats(attempts, t, progress, records)?;
            self.write_beats(&slots, t, progress, records);
            return Ok(());
        }
        // Times per row: one pass validates and applies each row in order, logging what it
        // overwrote, so that a bad row anywhere restores the whole batch.
        let mut undo: Vec<(u32, Beat)> = Vec::with_capacity(rows);
        let result = self.apply_beats(attempts, now, progress, records, &mut undo);
        if result.is_err() {
            for &(slot, old) in undo.iter().rev() {
                self.live.beat[slot as usize] = old;
            }
        }
        result
    }

    /// Validates heartbeat rows that all carry the time `t`, changing nothing. Returns each
    /// row's slot (`ENDED` for an attempt that has ended).
    fn check_beats(
        &self,
        attempts: &[i64],
        t: f64,
        progress: Option<&[f64]>,
        records: Option<&[f64]>,
    ) -> Result<Vec<u32>> {
        finite_time("now", t)?;
        let mut slots = Vec::with_capacity(attempts.len());
        for (row, &attempt) in attempts.iter().enumerate() {
            if let Some(&later) = attempts.get(row + PREFETCH_AHEAD) {
                self.live.prefetch(later);
            }
            let slot = self.live.slot_if_running(attempt)?;
            if let Some(p) = progress {
                check_progress(p[row])?;
            }
            if let Some(r) = records {
                check_records(r[row])?;
            }
            match slot {
                Some(slot) => {
                    check_not_before(attempt, t, self.live.beat[slot].at)?;
                    slots.push(slot as u32);
                }
                None => slots.push(table::ENDED),
            }
        }
        Ok(slots)
    }

    /// Writes validated heartbeat rows, all at time `t`, to the rows `slots` found.
    fn write_beats(
        &mut self,
        slots: &[u32],
        t: f64,
        progress: Option<&[f64]>,
        records: Option<&[f64]>,
    ) {
        for (row, &slot) in slots.iter().enumerate() {
            if let Some(&later) = slots.get(row + PREFETCH_AHEAD) {
                self.live.prefetch_slot(later as usize);
            }
            if slot == table::ENDED {
                continue;
            }
            let slot = slot as usize;
            let ran = t - self.live.start[slot];
            let beat = &mut self.live.beat[slot];
            beat.at = t;
            if let Some(p) = progress {
                beat.progress = p[row];
                beat.progress_rate = if ran > 0.0 { p[row] / ran } else { 0.0 };
            }
            if let Some(r) = records {
                beat.record_rate = if ran > 0.0 { r[row] / ran } else { 0.0 };
            }
        }
    }

    /// Validates and applies heartbeat rows in order, logging what it overwrites in `undo`.
    fn apply_beats(
        &mut self,
        attempts: &[i64],
        now: Times<'_>,
        progress: Option<&[f64]>,
        records: Option<&[f64]>,
        undo: &mut Vec<(u32, Beat)>,
    ) -> Result<()> {
        for (row, &attempt) in attempts.iter().enumerate() {
            if let Some(&later) = attempts.get(row + PREFETCH_AHEAD) {
                self.live.prefetch(later);
            }
            let t = now.at(row);
            let slot = self.live.slot_if_running(attempt)?;
            finite_time("now", t)?;
            if let Some(p) = progress {
                check_progress(p[row])?;
            }
            if let Some(r) = records {
                check_records(r[row])?;
            }
            let Some(slot) = slot else {
                continue;
            };
            let old = self.live.beat[slot];
            check_not_before(attempt, t, old.at)?;
            undo.push((slot as u32, old));
            let ran = t - self.live.start[slot];
            let beat = &mut self.live.beat[slot];
            beat.at = t;
            if let Some(p) = progress {
                beat.progress = p[row];
                beat.progress_rate = if ran > 0.0 { p[row] / ran } else { 0.0 };
            }
            if let Some(r) = records {
                beat.record_rate = if ran > 0.0 { r[row] / ran } else { 0.0 };
            }
        }
        Ok(())
    }

    pub fn heartbeat(
        &mut self,
        attempt: i64,
        now: f64,
        progress: Option<f64>,
        records: Option<f64>,
    ) -> Result<()> {
        let p = progress.map(|p| [p]);
        let r = records.map(|r| [r]);
        self.heartbeat_many(
            &[attempt],
            Times::One(now),
            p.as_ref().map(|p| &p[..]),
            r.as_ref().map(|r| &r[..]),
        )
    }

    /// Ends an attempt. Returns true iff this is its task's first success, whose duration
    /// then enters the stage's statistics.
    pub fn finish(
        &mut self,
        attempt: i64,
        now: f64,
        ok: bool,
        records: Option<f64>,
    ) -> Result<bool> {
        let r = records.map(|r| [r]);
        let won = self.finish_many(
            &[attempt],
            Times::One(now),
            Some(&[ok]),
            r.as_ref().map(|r| &r[..]),
        )?;
        Ok(won[0])
    }

    /// Ends one attempt per row (`ok`: per row, all true when `None`). Returns, per row,
    /// whether it was its task's first success, whose duration then enters the stage's
    /// statistics. Every row is validated first; an attempt may end only once.
    pub fn finish_many(
        &mut self,
        attempts: &[i64],
        now: Times<'_>,
        ok: Option<&[bool]>,
        records: Option<&[f64]>,
    ) -> Result<Vec<bool>> {
        let rows = attempts.len();
        now.check_len(rows)?;
        check_column("ok", ok, rows)?;
        check_column("records", records, rows)?;
        let mut seen = std::collections::HashSet::new();
        for (row, &attempt) in attempts.iter().enumerate() {
            let slot = self.live.slot(attempt)?;
            if rows > 1 && !seen.insert(attempt) {
                return Err(Error::value(
                    "attempts",
                    format!("end attempt {attempt} twice"),
                ));
            }
            let t = finite_time("now", now.at(row))?;
            check_not_before(attempt, t, self.live.beat[slot].at)?;
            if let Some(r) = records {
                check_records(r[row])?;
            }
        }
        let mut won = Vec::with_capacity(rows);
        for (row, &attempt) in attempts.iter().enumerate() {
            // Validated above; rows before this one moved other slots, so look it up again.
            let slot = self.live.slot(attempt)?;
            let task = self.live.task[slot] as usize;
            let stage = self.live.stage[slot] as usize;
            let duration = now.at(row) - self.live.start[slot];
            self.speculative_running -= u64::from(self.live.speculative[slot]);
            self.live.remove(slot);
            self.tasks.remove_running(task);
            self.remove_running_from_stage(stage);
            let was_done = self.tasks.is_done(task);
            self.done_running -= u64::from(was_done);
            let first_success = ok.is_none_or(|ok| ok[row]) && !was_done;
            if first_success {
                self.tasks.set_done(task);
                // Its other attempts now run for a finished task.
                self.done_running += u64::from(self.tasks.running(task));
                let records = records.map(|r| r[row]);
                let bytes = self.tasks.input_bytes[task];
                if let Some(target) = self.stages[stage].as_deref_mut() {
                    target.add_success(duration, bytes, records);
                }
            }
            won.push(first_success);
        }
        Ok(won)
    }

    /// Which running attempts to copy now. Changes nothing.
    pub fn check(&self, ctx: Context) -> Result<Candidates> {
        finite_time("now", ctx.now)?;
        let view = self.view();
        Ok(self.policy.check(&view, ctx))
    }

    fn view(&self) -> View<'_> {
        View {
            tasks: &self.tasks,
            live: &self.live,
            stages: self
                .live_stages
                .iter()
                .filter_map(|&s| self.stages[s as usize].as_deref())
                .collect(),
            live_index: &self.live_index,
            speculative_running: self.speculative_running,
            done_running: self.done_running,
        }
    }

    /// Nodes to keep copies away from (LATE's slow nodes); empty for other policies.
    pub fn slow_nodes(&self, now: f64) -> Result<Vec<u32>> {
        finite_time("now", now)?;
        Ok(match &self.policy {
            Policy::Late(late) => late.slow_nodes(&self.view()),
            _ => Vec::new(),
        })
    }

    pub fn task_done(&self, task: i64) -> Result<bool> {
        Ok(self.tasks.is_done(self.task_index(task)?))
    }

    pub fn running(&self, task: i64) -> Result<u32> {
        Ok(self.tasks.running(self.task_index(task)?))
    }

    pub fn stage_stats(&self, stage: i64) -> Result<StageStats> {
        let s = self.stages[self.stage_index(stage)?]
            .as_deref()
            .ok_or_else(|| Error::key("stage", stage))?;
        let q = |q: f64| {
            s.durations
                .quantile(q, crate::sketch::Method::Linear)
                .unwrap_or(f64::NAN)
        };
        Ok(StageStats {
            name: s.name.clone(),
            num_tasks: s.declared,
            tasks: s.tasks,
            dropped: s.dropped,
            successes: s.successes,
            running: s.running,
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
        })
    }

    /// Bytes held: the live table (rows of running attempts), the attempt-id index (4 per
    /// attempt ever started), the task table and every stage's statistics.
    pub fn memory_bytes(&self) -> [usize; 4] {
        [
            self.live.memory_bytes(),
            self.live.index_bytes(),
            self.tasks.memory_bytes(),
            self.stages.capacity() * std::mem::size_of::<Option<Box<Stage>>>()
                + self.live_index.capacity() * 4
                + self.live_stages.capacity() * 4
                + self
                    .stages
                    .iter()
                    .flatten()
                    .map(|s| s.memory_bytes())
                    .sum::<usize>(),
        ]
    }
}

#[cfg(test)]
mod tests;
