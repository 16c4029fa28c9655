//! Python binding of `crate::detector::Detector`: argument conversion, the policy object read
//! by its field names, the lock taken with the interpreter released, numpy columns out.

use std::sync::{Mutex, MutexGuard};

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyKeyError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use crate::detector::{
    Candidates, Context, Detector, Flink, InputBytes, Late, Mantri, Policy, Smallpond, Spark, Times,
};
use crate::error::Error;

type Floats<'py> = PyReadonlyArray1<'py, f64>;
type Ints<'py> = PyReadonlyArray1<'py, i64>;

/// What a column may hold.
#[derive(Clone, Copy, PartialEq)]
enum Holds {
    /// Ids or counts: integer dtypes (ids past i64 are unknown ids of `kind`).
    Ints(Option<&'static str>),
    /// Times, progress, records, values: integer or float dtypes.
    Reals,
    Bools,
}

/// The caller's value for an error message, cut short.
fn shown(obj: &Bound<'_, PyAny>) -> String {
    let text = obj
        .repr()
        .map_or_else(|_| "?".to_string(), |r| r.to_string());
    if text.chars().count() > 80 {
        format!("{}...", text.chars().take(77).collect::<String>())
    } else {
        text
    }
}

/// A 1-D column: any sequence or numpy array of the right kind, strided, byte-swapped or
/// read-only alike, as a contiguous native array (numpy copies only where it must). Strings,
/// datetimes, complex numbers, bools (for numbers) and objects are a TypeError naming the
/// argument, rather than parsed or reinterpreted, and so is another shape.
fn column<'py>(obj: &Bound<'py, PyAny>, arg: &str, holds: Holds) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let numpy = py.import("numpy")?;
    let array = numpy
        .getattr("asarray")?
        .call1((obj,))
        .map_err(|e| PyValueError::new_err(format!("{arg} must be a 1-D array: {e}")))?;
    let dtype = array.getattr("dtype")?;
    let kind: String = dtype.getattr("kind")?.extract()?;
    let size: usize = array.getattr("size")?.extract()?;
    let (ok, want, target) = match holds {
        Holds::Ints(_) => (kind == "i" || kind == "u", "ints", "int64"),
        Holds::Reals => (
            kind == "i" || kind == "u" || kind == "f",
            "real numbers",
            "float64",
        ),
        Holds::Bools => (kind == "b", "bools", "bool"),
    };
    if !(ok || size == 0) {
        return Err(PyTypeError::new_err(format!(
            "{arg} must hold {want}, got an array of dtype {}: {}",
            dtype.str()?,
            shown(obj)
        )));
    }
    let ndim: usize = array.getattr("ndim")?.extract()?;
    if ndim != 1 {
        // Not a column at all: a TypeError, as numpy's own conversion gave before.
        return Err(PyTypeError::new_err(format!(
            "{arg} must be a 1-D array, got shape {}: {}",
            array.getattr("shape")?.repr()?,
            shown(obj)
        )));
    }
    if let Holds::Ints(id) = holds {
        let itemsize: usize = dtype.getattr("itemsize")?.extract()?;
        if kind == "u" && itemsize == 8 && size > 0 {
            // uint64 past i64::MAX would wrap to a negative id: name the value instead.
            let largest = array.call_method0("max")?;
            if largest.extract::<i64>().is_err() {
                return Err(match id {
                    Some(id) => PyKeyError::new_err(format!("unknown {id} id {}", largest.repr()?)),
                    None => PyValueError::new_err(format!(
                        "{arg} is out of range, got {}",
                        largest.repr()?
                    )),
                });
            }
        }
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", target)?;
    numpy
        .getattr("ascontiguousarray")?
        .call((array,), Some(&kwargs))
}

fn ints_arg<'py>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Ints<'py>> {
    let id = match arg {
        "tasks" => Some("task"),
        "attempts" => Some("attempt"),
        _ => None,
    };
    column(obj, arg, Holds::Ints(id))?.extract()
}

pub(crate) fn floats_arg<'py>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Floats<'py>> {
    column(obj, arg, Holds::Reals)?.extract()
}

fn opt_floats_arg<'py>(
    obj: Option<&Bound<'py, PyAny>>,
    arg: &str,
) -> PyResult<Option<Floats<'py>>> {
    match obj {
        Some(o) if !o.is_none() => Ok(Some(floats_arg(o, arg)?)),
        _ => Ok(None),
    }
}

/// Python's bool or numpy's (named `bool`, or `bool_` before numpy 2).
fn is_numpy_bool(obj: &Bound<'_, PyAny>) -> bool {
    obj.get_type()
        .name()
        .is_ok_and(|n| n == "bool" || n == "bool_")
}

/// A real number: an int or float, numpy's included. Bools, strings and complex numbers
/// are a TypeError naming the argument.
pub(crate) fn float_arg(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<f64> {
    let is_bool = obj.is_instance_of::<PyBool>() || is_numpy_bool(obj);
    let text_or_complex = obj.is_instance_of::<pyo3::types::PyString>()
        || obj.is_instance_of::<pyo3::types::PyBytes>()
        || obj.is_instance_of::<pyo3::types::PyComplex>();
    match obj.extract::<f64>() {
        Ok(x) if !is_bool && !text_or_complex => Ok(x),
        _ => Err(PyTypeError::new_err(format!(
            "{arg} must be a real number, got {}",
            shown(obj)
        ))),
    }
}

fn opt_float_arg(obj: Option<&Bound<'_, PyAny>>, arg: &str) -> PyResult<Option<f64>> {
    match obj {
        Some(o) if !o.is_none() => Ok(Some(float_arg(o, arg)?)),
        _ => Ok(None),
    }
}

fn bool_arg(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<bool> {
    let numpy_bool = is_numpy_bool(obj);
    if obj.is_instance_of::<PyBool>() || numpy_bool {
        obj.is_truthy()
    } else {
        Err(PyTypeError::new_err(format!(
            "{arg} must be a bool, got {}",
            shown(obj)
        )))
    }
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
            min_speculative: field(policy, "min_speculative")?,
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
        let py = now.py();
        let ndim: usize = py
            .import("numpy")?
            .getattr("ndim")?
            .call1((now,))?
            .extract()?;
        if ndim == 0 {
            return Ok(Now::One(float_arg(now, "now")?));
        }
        Ok(Now::Each(floats_arg(now, "now")?))
    }

    fn times(&self) -> PyResult<Times<'_>> {
        Ok(match self {
            Now::One(t) => Times::One(*t),
            Now::Each(ts) => Times::Each(ts.as_slice()?),
        })
    }
}

fn slice_of<'a, T: numpy::Element>(
    a: &'a Option<PyReadonlyArray1<'_, T>>,
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
        // None, one count for every task (passed as one number: the core checks `n` before
        // it allocates anything), or one per task.
        let each = match input_bytes {
            Some(b) if !b.is_none() && b.extract::<i64>().is_err() => {
                Some(ints_arg(b, "input_bytes")?)
            }
            _ => None,
        };
        let bytes = match (&each, input_bytes) {
            (Some(a), _) => InputBytes::Each(a.as_slice()?),
            (None, Some(b)) if !b.is_none() => InputBytes::One(int_arg(b, "input_bytes", None)?),
            _ => InputBytes::Unknown,
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
        now: &Bound<'_, PyAny>,
        node: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u32> {
        let task = int_arg(task, "task", Some("task"))?;
        let now = float_arg(now, "now")?;
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
        now: &Bound<'_, PyAny>,
        progress: Option<&Bound<'_, PyAny>>,
        records: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let attempt = int_arg(attempt, "attempt", Some("attempt"))?;
        let now = float_arg(now, "now")?;
        let progress = opt_float_arg(progress, "progress")?;
        let records = opt_float_arg(records, "records")?;
        Ok(py.detach(|| self.lock().heartbeat(attempt, now, progress, records))?)
    }

    #[pyo3(signature = (attempts, now, progress = None, records = None))]
    fn heartbeat_many(
        &self,
        py: Python<'_>,
        attempts: &Bound<'_, PyAny>,
        now: &Bound<'_, PyAny>,
        progress: Option<&Bound<'_, PyAny>>,
        records: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let attempts = ints_arg(attempts, "attempts")?;
        let progress = opt_floats_arg(progress, "progress")?;
        let records = opt_floats_arg(records, "records")?;
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
    #[pyo3(
        signature = (attempt, now, ok = None, records = None),
        text_signature = "($self, attempt, now, ok=True, records=None)"
    )]
    fn finish(
        &self,
        py: Python<'_>,
        attempt: &Bound<'_, PyAny>,
        now: &Bound<'_, PyAny>,
        ok: Option<&Bound<'_, PyAny>>,
        records: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let attempt = int_arg(attempt, "attempt", Some("attempt"))?;
        let now = float_arg(now, "now")?;
        let ok = ok.map_or(Ok(true), |ok| bool_arg(ok, "ok"))?;
        let records = opt_float_arg(records, "records")?;
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
        ok: Option<&Bound<'_, PyAny>>,
        records: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyArray1<bool>>> {
        let attempts = ints_arg(attempts, "attempts")?;
        let records = opt_floats_arg(records, "records")?;
        let ok: Option<PyReadonlyArray1<'_, bool>> = match ok {
            Some(o) if !o.is_none() => Some(column(o, "ok", Holds::Bools)?.extract()?),
            _ => None,
        };
        let now = Now::extract(now)?;
        let times = now.times()?;
        let attempts = attempts.as_slice()?;
        let records = slice_of(&records)?;
        let ok = slice_of(&ok)?;
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
        now: &Bound<'_, PyAny>,
        pending: Option<&Bound<'_, PyAny>>,
        slots: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyCandidates> {
        let now = float_arg(now, "now")?;
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
    fn slow_nodes(&self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<Py<PyArray1<i64>>> {
        let now = float_arg(now, "now")?;
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

    /// Says that a task ended without success and will get no more attempts, so that it
    /// leaves its stage's size (the denominator of Spark's and Flink's gates).
    ///
    /// The scheduler calls it once per task, when the task is settled without a success and
    /// no attempt of it runs any more: its Future was cancelled before any attempt started
    /// (``Future.cancel()``, ``shutdown(cancel_futures=True)``), or its last allowed attempt
    /// failed (after ``finish(attempt, now, ok=False)``). A task that will be retried is not
    /// dropped. KeyError for an unknown task id (or one of a removed stage); ValueError
    /// naming the task, with nothing changed, for a task that has succeeded, that was
    /// dropped already, or that has running attempts (finish them with ok=False first).
    /// Afterwards ``start`` of the task is a ValueError, ``task_done`` is False and
    /// ``stage_stats`` counts it in ``dropped``.
    fn drop_task(&self, py: Python<'_>, task: &Bound<'_, PyAny>) -> PyResult<()> {
        let task = int_arg(task, "task", Some("task"))?;
        Ok(py.detach(|| self.lock().drop_task(task))?)
    }

    /// Forgets a stage the scheduler is done with and releases its statistics; `check` then
    /// costs nothing for it. The stage and its tasks are unknown ids afterwards (KeyError);
    /// its ended attempts stay ended (a late heartbeat is ignored). A stage with running
    /// attempts is a ValueError naming it, and stays as it was.
    fn remove_stage(&self, py: Python<'_>, stage: &Bound<'_, PyAny>) -> PyResult<()> {
        let stage = int_arg(stage, "stage", Some("stage"))?;
        Ok(py.detach(|| self.lock().remove_stage(stage))?)
    }

    /// A dict: name, num_tasks (declared, or None), tasks (added, dropped ones included),
    /// dropped, successes, running, p50, p95, p99
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
        d.set_item("dropped", s.dropped)?;
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
