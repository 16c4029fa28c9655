//! A stage's statistics: bounded whatever its task count (two quantile sketches and a few
//! totals), fed by the first successful attempt of each task.

use crate::error::{Error, Result};
use crate::sketch::QuantileSketch;

// Settings of the per-stage sketches: exact up to 1024 successes, 1 % relative error after.
const RELATIVE_ACCURACY: f64 = 0.01;
const MAX_BINS: usize = 2048;
const EXACT_LIMIT: usize = 1024;

/// Java's `Double.MIN_VALUE`: Flink divides by `max(bytes, MIN_VALUE)`, so a task with zero
/// input bytes and a positive time is infinitely slow, and one with zero time is not slow.
pub const MIN_BYTES: f64 = 5e-324;

/// Flink's normalised time: time per input byte.
pub fn per_byte(time: f64, input_bytes: i64) -> f64 {
    time / (input_bytes as f64).max(MIN_BYTES)
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: Option<String>,
    /// Declared task count; `None` for an open-ended stage.
    pub declared: Option<u64>,
    /// Tasks added so far (dropped ones included).
    pub tasks: u64,
    /// Tasks dropped: ended without success for good (`Detector::drop_task`).
    pub dropped: u64,
    /// Tasks added and not dropped whose input bytes are unknown.
    pub unknown_bytes: u64,
    /// Smallest known input byte count of the tasks ever added (a prefilter bound for Flink's
    /// check: a drop leaves it, and a bound over more tasks is still a bound).
    pub min_bytes: i64,
    pub successes: u64,
    pub running: u64,
    /// Durations of first successes.
    pub durations: QuantileSketch,
    /// Durations per input byte of first successes with known bytes (finite ones).
    pub per_byte: QuantileSketch,
    /// First successes whose time per byte is infinite (zero bytes, positive time).
    pub per_byte_infinite: u64,
    /// Records and seconds summed over first successes that reported records (Spark's
    /// efficiency test).
    pub records: f64,
    pub record_seconds: f64,
}

impl Stage {
    pub fn new(declared: Option<u64>, name: Option<String>) -> Result<Stage> {
        if declared == Some(0) {
            return Err(Error::value("num_tasks", "must be at least 1, got 0"));
        }
        let sketch = QuantileSketch::new(RELATIVE_ACCURACY, MAX_BINS, EXACT_LIMIT)?;
        Ok(Stage {
            name,
            declared,
            tasks: 0,
            dropped: 0,
            unknown_bytes: 0,
            min_bytes: i64::MAX,
            successes: 0,
            running: 0,
            durations: sketch.clone(),
            per_byte: sketch,
            per_byte_infinite: 0,
            records: 0.0,
            record_seconds: 0.0,
        })
    }

    /// The stage's size, the denominator of Spark's and Flink's gates: the declared task
    /// count, else the tasks added so far, less the dropped tasks. A dropped task will never
    /// succeed; counting it would keep a gate such as "75 % of the stage succeeded" shut for
    /// good. (The peers never meet this case: a Spark task set whose task fails
    /// `spark.task.maxFailures` times, or whose stage is cancelled, is aborted and never
    /// speculates again; a Flink job vertex with a task failed for good goes with its job.)
    pub fn num_tasks(&self) -> u64 {
        self.declared
            .unwrap_or(self.tasks)
            .saturating_sub(self.dropped)
    }

    /// Room for `n` more tasks, or a `ValueError`.
    pub fn check_room(&self, stage: usize, n: u64) -> Result<()> {
        match self.declared {
            Some(declared) if self.tasks.saturating_add(n) > declared => {
                Err(Error::Value(format!(
                    "n={n} is more tasks than stage {stage} has room for: it was declared with \
                 num_tasks={declared} and has {} tasks",
                    self.tasks
                )))
            }
            _ => Ok(()),
        }
    }

    pub fn add_task(&mut self, input_bytes: i64) {
        self.tasks += 1;
        if input_bytes < 0 {
            self.unknown_bytes += 1;
        } else {
            self.min_bytes = self.min_bytes.min(input_bytes);
        }
    }

    /// A task of the stage ends without success for good: it leaves the stage's size, and
    /// its byte count leaves the test of `normalised`.
    pub fn drop_task(&mut self, input_bytes: i64) {
        self.dropped += 1;
        if input_bytes < 0 {
            self.unknown_bytes = self.unknown_bytes.saturating_sub(1);
        }
    }

    /// Whether Flink compares time per byte (every task's bytes known) or raw time; dropped
    /// tasks do not count.
    pub fn normalised(&self) -> bool {
        self.unknown_bytes == 0 && self.tasks > self.dropped
    }

    /// Records a task's first success.
    pub fn add_success(&mut self, duration: f64, input_bytes: i64, records: Option<f64>) {
        self.successes += 1;
        // `duration` is finite and >= 0: the Detector validated both ends of it.
        let _ = self.durations.add(duration);
        if input_bytes >= 0 {
            let normalised = per_byte(duration, input_bytes);
            if normalised.is_finite() {
                let _ = self.per_byte.add(normalised);
            } else {
                self.per_byte_infinite += 1;
            }
        }
        if let Some(records) = records {
            self.records += records;
            self.record_seconds += duration;
        }
    }

    /// The `rank`-th smallest time per byte of the first successes (infinite ones last).
    /// A rank past the last is clamped to it, as a list index would be.
    pub fn per_byte_at_rank(&self, rank: u64) -> f64 {
        if rank < self.per_byte.count() || self.per_byte_infinite == 0 {
            self.per_byte.value_at_rank(rank)
        } else {
            f64::INFINITY
        }
    }

    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Stage>()
            + self.name.as_ref().map_or(0, String::capacity)
            + self.durations.memory_bytes()
            + self.per_byte.memory_bytes()
    }
}
