//! Python binding of `crate::detector::Detector`: argument conversion, the policy object read
//! by its field names, the lock taken with the interpreter released, numpy columns out.

use std::sync::{Mutex, MutexGuard};

use numpy::{AllowTypeChange, IntoPyArray, PyArray1, PyArrayLike1};
use pyo3::exceptions::{PyKeyError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use crate::detector::{
    Candidates, Context, Detector, Flink, Late, Mantri, Policy, Smallpond, Spark, Times,
};
use crate::error::Error;

type Floats<'py> = PyArrayLike1<'py, f64, AllowTypeChange>;
type Ints<'py> = PyArrayLike1<'py, i64, AllowTypeChange>;

/// A 1-D column of ids or counts: any integer array or sequence of ints. Floats, bools and
/// strings are a TypeError naming the argument rather than silently truncated or parsed.
fn ints_arg<'py>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Ints<'py>> {
    let py = obj.py();
    let array = py.import("numpy")?.getattr("asarray")?.call1((obj,))?;
    let kind: String = array.getattr("dtype")?.getattr("kind")?.extract()?;
    let size: usize = array.getattr("size")?.extract()?;
    if !(kind == "i" || kind == "u" || size == 0) {
        return Err(PyTypeError::new_err(format!(
            "{arg} must hold ints, got an array of dtype {}",
            array.getattr("dtype")?.str()?
        )));
    }
    array.extract()
}

/// An int argument: a bool or a non-int is a TypeError; an int past 64 bits is, for an id
/// (`kind`), an unknown id (KeyError) and otherwise a bad value (ValueError).
fn int_arg(obj: &Bound<'_, PyAny>, arg: &str, kind: Option<&'static str>) -> PyResult<i64> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{arg} must be an int, got {}",
            obj.repr()?
        )));
    }
    match obj.extract::<i64>() {
        Ok(v) => Ok(v),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Err(match kind {
            Some(kind) => PyKeyError::new_err(format!("unknown {kind} id {}", obj.repr()?)),
            None => PyValueError::new_err(format!("{arg} is out of range, got {}", obj.repr()?)),
        }),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{arg} must be an int, got {}",
            obj.repr()?
        ))),
    }
}

fn opt_int_arg(obj: Option<&Bound<'_, PyAny>>, arg: &str) -> PyResult<Option<i64>> {
    match obj {
        Some(o) if !o.is_none() => Ok(Some(int_arg(o, arg, None)?)),
        _ => Ok(None),
    }
}

fn field<'py, T>(policy: &Bound<'py, PyAny>, name: &str) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py, Error = PyErr>,
{
    policy
        .getattr(name)?
        .extract::<T>()
        .map_err(|e| PyTypeError::new_err(format!("policy.{name}: {e}")))
}

/// Reads a policy object (SparkPolicy, FlinkPolicy, ...) by its `kind` and field names.
fn policy_from_py(policy: &Bound<'_, PyAny>) -> PyResult<Policy> {
    if policy.is_none() {
        return Ok(Policy::Never);
    }
    let kind: String = match policy.getattr("kind") {
        Ok(kind) => kind.extract()?,
        Err(_) => {
            return Err(PyTypeError::new_err(format!(
                "policy must be a SparkPolicy, FlinkPolicy, SmallpondPolicy, LatePolicy, MantriPolicy or None, got {}",
                policy.repr()?
            )))
        }
    };
    match kind.as_str() {
        "spark" => Ok(Policy::Spark(Spark {
            quantile: field(policy, "quantile")?,
            multiplier: field(policy, "multiplier")?,
            min_runtime: field(policy, "min_runtime")?,
            task_duration_threshold: field(policy, "task_duration_threshold")?,
            slots_per_executor: field(policy, "slots_per_executor")?,
            efficiency: field(policy, "efficiency")?,
            process_rate_multiplier: field(policy, "process_rate_multiplier")?,
            long_run_task_factor: field(policy, "long_run_task_factor")?,
        })),
        "flink" => Ok(Policy::Flink(Flink {
            baseline_ratio: field(policy, "baseline_ratio")?,
            baseline_multiplier: field(policy, "baseline_multiplier")?,
            baseline_lower_bound: field(policy, "baseline_lower_bound")?,
            max_concurrent_executions: field(policy, "max_concurrent_executions")?,
        })),
        "smallpond" => Ok(Policy::Smallpond(Smallpond {
            min_samples: field(policy, "min_samples")?,
            probe_timeout: field(policy, "probe_timeout")?,
            aggressive: field(policy, "aggressive")?,
            max_retry_count: field(policy, "max_retry_count")?,
        })),
        "late" => Ok(Policy::Late(Late {
            slow_task_quantile: field(policy, "slow_task_quantile")?,
            speculative_cap: field(policy, "speculative_cap")?,
            slow_node_quantile: field(policy, "slow_node_quantile")?,
            min_runtime: field(policy, "min_runtime")?,
            require_benefit: field(policy, "require_benefit")?,
        })),
        "mantri" => Ok(Policy::Mantri(Mantri {
            delta: field(policy, "delta")?,
            max_restarts: field(policy, "max_restarts")?,
            min_samples: field(policy, "min_samples")?,
            interval: field(policy, "interval")?,
        })),
        other => Err(Error::value("policy", format!("of kind {other:?} is not supported")).into()),
    }
}

/// `now` of a batch call: a float for every row, or an array of them.
enum Now<'py> {
    One(f64),
    Each(Floats<'py>),
}

impl<'py> Now<'py> {
    fn extract(now: &Bound<'py, PyAny>) -> PyResult<Now<'py>> {
        if let Ok(t) = now.extract::<f64>() {
            return Ok(Now::One(t));
        }
        Ok(Now::Each(now.extract()?))
    }

    fn times(&self) -> PyResult<Times<'_>> {
        Ok(match self {
            Now::One(t) => Times::One(*t),
            Now::Each(ts) => Times::Each(ts.as_slice()?),
        })
    }
}

fn slice_of<'a, T: numpy::Element>(
    a: &'a Option<PyArrayLike1<'_, T, AllowTypeChange>>,
) -> PyResult<Option<&'a [T]>> {
    match a {
        Some(a) => Ok(Some(a.as_slice()?)),
        None => Ok(None),
    }
}

fn ids(py: Python<'_>, first: u32, n: usize) -> Py<PyArray1<i64>> {
    (first as i64..first as i64 + n as i64)
        .collect::<Vec<i64>>()
        .into_pyarray(py)
        .unbind()
}

/// The answer of `Detector.check`: equal-length numpy columns, most urgent first.
#[pyclass(frozen, name = "Candidates", module = "straggler")]
pub struct PyCandidates {
    #[pyo3(get)]
    task: Py<PyArray1<i64>>,
    #[pyo3(get)]
    attempt: Py<PyArray1<i64>>,
    #[pyo3(get)]
    stage: Py<PyArray1<i64>>,
    #[pyo3(get)]
    node: Py<PyArray1<i64>>,
    #[pyo3(get)]
    elapsed: Py<PyArray1<f64>>,
    #[pyo3(get)]
    threshold: Py<PyArray1<f64>>,
    /// 0: copy beside the attempt; 1: kill it and restart the task (MantriPolicy only).
    #[pyo3(get)]
    action: Py<PyArray1<i64>>,
    len: usize,
}

fn to_i64(py: Python<'_>, v: Vec<u32>) -> Py<PyArray1<i64>> {
    v.into_iter()
        .map(i64::from)
        .collect::<Vec<i64>>()
        .into_pyarray(py)
        .unbind()
}

impl PyCandidates {
    fn new(py: Python<'_>, c: Candidates) -> PyCandidates {
        PyCandidates {
            len: c.len(),
            task: to_i64(py, c.task),
            attempt: to_i64(py, c.attempt),
            stage: to_i64(py, c.stage),
            node: to_i64(py, c.node),
            elapsed: c.elapsed.into_pyarray(py).unbind(),
            threshold: c.threshold.into_pyarray(py).unbind(),
            action: c
                .action
                .into_iter()
                .map(i64::from)
                .collect::<Vec<i64>>()
                .into_pyarray(py)
                .unbind(),
        }
    }
}

#[pymethods]
impl PyCandidates {
    fn __len__(&self) -> usize {
        self.len
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Candidates(task={}, elapsed={}, threshold={})",
            self.task.bind(py).repr()?,
            self.elapsed.bind(py).repr()?,
            self.threshold.bind(py).repr()?
        ))
    }
}

/// Finds the attempts of a running job that deserve a speculative copy.
#[pyclass(frozen, name = "Detector", module = "straggler")]
pub struct PyDetector {
    inner: Mutex<Detector>,
    policy: Py<PyAny>,
}

impl PyDetector {
    fn lock(&self) -> MutexGuard<'_, Detector> {
        // The core never panics while holding the lock; a poisoned lock still holds a
        // consistent table because every method validates before it writes.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl PyDetector {
    #[new]
    #[pyo3(signature = (policy = None))]
    fn new(py: Python<'_>, policy: Option<&Bound<'_, PyAny>>) -> PyResult<PyDetector> {
        let (core, policy) = match policy {
            Some(p) => (policy_from_py(p)?, p.clone().unbind()),
            None => (Policy::Never, py.None()),
        };
        Ok(PyDetector {
            inner: Mutex::new(Detector::new(core)?),
            policy,
        })
    }

    /// The policy object this detector was built with (None: never speculate).
    #[getter]
    fn policy(&self, py: Python<'_>) -> Py<PyAny> {
        self.policy.clone_ref(py)
    }

    #[getter]
    fn num_tasks(&self, py: Python<'_>) -> usize {
        py.detach(|| self.lock().num_tasks())
    }

    #[getter]
    fn num_running(&self, py: Python<'_>) -> usize {
        py.detach(|| self.lock().num_running())
    }

    #[pyo3(signature = (num_tasks = None, name = None))]
    fn add_stage(
        &self,
        py: Python<'_>,
        num_tasks: Option<&Bound<'_, PyAny>>,
        name: Option<String>,
    ) -> PyResult<u32> {
        let num_tasks = opt_int_arg(num_tasks, "num_tasks")?;
        Ok(py.detach(|| self.lock().add_stage(num_tasks, name))?)
    }

    #[pyo3(signature = (stage, input_bytes = None, speculatable = true))]
    fn add_task(
        &self,
        py: Python<'_>,
        stage: &Bound<'_, PyAny>,
        input_bytes: Option<&Bound<'_, PyAny>>,
        speculatable: bool,
    ) -> PyResult<u32> {
        let stage = int_arg(stage, "stage", Some("stage"))?;
        let bytes = opt_int_arg(input_bytes, "input_bytes")?.unwrap_or(-1);
        Ok(py.detach(|| self.lock().add_task(stage, bytes, speculatable))?)
    }

    #[pyo3(signature = (stage, n, input_bytes = None, speculatable = true))]
    fn add_tasks(
        &self,
        py: Python<'_>,
        stage: &Bound<'_, PyAny>,
        n: &Bound<'_, PyAny>,
        input_bytes: Option<&Bound<'_, PyAny>>,
        speculatable: bool,
    ) -> PyResult<Py<PyArray1<i64>>> {
        let stage = int_arg(stage, "stage", Some("stage"))?;
        let n = int_arg(n, "n", None)?;
        // None, one count for every task, or one per task.
        let (one, each): (Option<Vec<i64>>, Option<Ints<'_>>) = match input_bytes {
            Some(b) if !b.is_none() => match b.extract::<i64>() {
                // An impossible `n` is left for the core to reject, unallocated.
                Ok(x) if (0..u32::MAX as i64).contains(&n) => (Some(vec![x; n as usize]), None),
                Ok(_) => (None, None),
                Err(_) => (None, Some(ints_arg(b, "input_bytes")?)),
            },
            _ => (None, None),
        };
        let bytes = match (&one, &each) {
            (Some(v), _) => Some(&v[..]),
            (None, Some(a)) => Some(a.as_slice()?),
            (None, None) => None,
        };
        let first = py.detach(|| self.lock().add_tasks(stage, n, bytes, speculatable))?;
        Ok(ids(py, first, n as usize))
    }

    // The signature Python shows is the documented one; None is accepted as 0 as well.
    #[pyo3(signature = (task, now, node = None), text_signature = "($self, task, now, node=0)")]
    fn start(
        &self,
        py: Python<'_>,
        task: &Bound<'_, PyAny>,
        now: f64,
        node: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u32> {
        let task = int_arg(task, "task", Some("task"))?;
        let node = opt_int_arg(node, "node")?.unwrap_or(0);
        Ok(py.detach(|| self.lock().start(task, now, node))?)
    }

    #[pyo3(signature = (tasks, now, nodes = None))]
    fn start_many(
        &self,
        py: Python<'_>,
        tasks: &Bound<'_, PyAny>,
        now: &Bound<'_, PyAny>,
        nodes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyArray1<i64>>> {
        let tasks = ints_arg(tasks, "tasks")?;
        let nodes = match nodes {
            Some(n) if !n.is_none() => Some(ints_arg(n, "nodes")?),
            _ => None,
        };
        let now = Now::extract(now)?;
        let times = now.times()?;
        let tasks = tasks.as_slice()?;
        let nodes = match &nodes {
            Some(n) => Some(n.as_slice()?),
            None => None,
        };
        let first = py.detach(|| self.lock().start_many(tasks, times, nodes))?;
        Ok(ids(py, first, tasks.len()))
    }

    #[pyo3(signature = (attempt, now, progress = None, records = None))]
    fn heartbeat(
        &self,
        py: Python<'_>,
        attempt: &Bound<'_, PyAny>,
        now: f64,
        progress: Option<f64>,
        records: Option<f64>,
    ) -> PyResult<()> {
        let attempt = int_arg(attempt, "attempt", Some("attempt"))?;
        Ok(py.detach(|| self.lock().heartbeat(attempt, now, progress, records))?)
    }

    #[pyo3(signature = (attempts, now, progress = None, records = None))]
    fn heartbeat_many(
        &self,
        py: Python<'_>,
        attempts: &Bound<'_, PyAny>,
        now: &Bound<'_, PyAny>,
        progress: Option<Floats<'_>>,
        records: Option<Floats<'_>>,
    ) -> PyResult<()> {
        let attempts = ints_arg(attempts, "attempts")?;
        let now = Now::extract(now)?;
        let times = now.times()?;
        let attempts = attempts.as_slice()?;
        let progress = slice_of(&progress)?;
        let records = slice_of(&records)?;
        Ok(py.detach(|| {
            self.lock()
                .heartbeat_many(attempts, times, progress, records)
        })?)
    }

    /// Ends an attempt; True iff it is its task's first success.
    #[pyo3(signature = (attempt, now, ok = true, records = None))]
    fn finish(
        &self,
        py: Python<'_>,
        attempt: &Bound<'_, PyAny>,
        now: f64,
        ok: bool,
        records: Option<f64>,
    ) -> PyResult<bool> {
        let attempt = int_arg(attempt, "attempt", Some("attempt"))?;
        Ok(py.detach(|| self.lock().finish(attempt, now, ok, records))?)
    }

    /// Ends one attempt per row; returns, per row, whether it was its task's first success.
    /// `ok` is per row (all true when None); `records` per row when given.
    #[pyo3(signature = (attempts, now, ok = None, records = None))]
    fn finish_many(
        &self,
        py: Python<'_>,
        attempts: &Bound<'_, PyAny>,
        now: &Bound<'_, PyAny>,
        ok: Option<Vec<bool>>,
        records: Option<Floats<'_>>,
    ) -> PyResult<Py<PyArray1<bool>>> {
        let attempts = ints_arg(attempts, "attempts")?;
        let now = Now::extract(now)?;
        let times = now.times()?;
        let attempts = attempts.as_slice()?;
        let records = slice_of(&records)?;
        let ok = ok.as_deref();
        let won = py.detach(|| self.lock().finish_many(attempts, times, ok, records))?;
        Ok(won.into_pyarray(py).unbind())
    }

    /// Which running attempts to copy now (changes nothing).
    #[pyo3(
        signature = (now, pending = None, slots = None),
        text_signature = "($self, now, pending=0, slots=None)"
    )]
    fn check(
        &self,
        py: Python<'_>,
        now: f64,
        pending: Option<&Bound<'_, PyAny>>,
        slots: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyCandidates> {
        let pending = opt_int_arg(pending, "pending")?.unwrap_or(0);
        let slots = opt_int_arg(slots, "slots")?;
        let pending = u64::try_from(pending)
            .map_err(|_| Error::value("pending", format!("must be >= 0, got {pending}")))?;
        let slots = match slots {
            None => None,
            Some(n) => Some(
                u64::try_from(n)
                    .map_err(|_| Error::value("slots", format!("must be >= 0 or None, got {n}")))?,
            ),
        };
        let ctx = Context {
            now,
            pending,
            slots,
        };
        let candidates = py.detach(|| self.lock().check(ctx))?;
        Ok(PyCandidates::new(py, candidates))
    }

    /// Nodes to keep copies away from (LATE's slow nodes), ascending; empty for other
    /// policies.
    fn slow_nodes(&self, py: Python<'_>, now: f64) -> PyResult<Py<PyArray1<i64>>> {
        let nodes = py.detach(|| self.lock().slow_nodes(now))?;
        Ok(to_i64(py, nodes))
    }

    fn task_done(&self, py: Python<'_>, task: &Bound<'_, PyAny>) -> PyResult<bool> {
        let task = int_arg(task, "task", Some("task"))?;
        Ok(py.detach(|| self.lock().task_done(task))?)
    }

    fn running(&self, py: Python<'_>, task: &Bound<'_, PyAny>) -> PyResult<u32> {
        let task = int_arg(task, "task", Some("task"))?;
        Ok(py.detach(|| self.lock().running(task))?)
    }

    /// A dict: name, num_tasks (declared, or None), tasks, successes, running, p50, p95, p99
    /// (linear percentiles of the successful durations; nan while none).
    fn stage_stats<'py>(
        &self,
        py: Python<'py>,
        stage: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let stage = int_arg(stage, "stage", Some("stage"))?;
        let s = py.detach(|| self.lock().stage_stats(stage))?;
        let d = PyDict::new(py);
        d.set_item("name", s.name)?;
        d.set_item("num_tasks", s.num_tasks)?;
        d.set_item("tasks", s.tasks)?;
        d.set_item("successes", s.successes)?;
        d.set_item("running", s.running)?;
        d.set_item("p50", s.p50)?;
        d.set_item("p95", s.p95)?;
        d.set_item("p99", s.p99)?;
        Ok(d)
    }

    /// Bytes held now: {"live": rows of running attempts, "attempt_index": 4 per attempt
    /// ever started, "tasks": the task table, "stages": every stage's statistics}.
    fn memory_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let [live, index, tasks, stages] = py.detach(|| self.lock().memory_bytes());
        let d = PyDict::new(py);
        d.set_item("live", live)?;
        d.set_item("attempt_index", index)?;
        d.set_item("tasks", tasks)?;
        d.set_item("stages", stages)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (tasks, running) = py.detach(|| {
            let d = self.lock();
            (d.num_tasks(), d.num_running())
        });
        Ok(format!(
            "Detector(policy={}, tasks={tasks}, running={running})",
            self.policy.bind(py).repr()?
        ))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDetector>()?;
    m.add_class::<PyCandidates>()?;
    Ok(())
}
