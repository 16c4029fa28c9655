//! Python binding of `crate::sketch::QuantileSketch`.
//!
//! A frozen class around a `Mutex`: any thread may call any method at any time (no "Already
//! borrowed"). The lock is never held while the interpreter is needed, and a caller that
//! would have to wait for it, or that adds a batch, first releases the interpreter.

use std::sync::{Mutex, MutexGuard, PoisonError};

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::detector::{float_arg, floats_arg};
use crate::error::Error;
use crate::sketch::{
    Method, QuantileSketch, DEFAULT_EXACT_LIMIT, DEFAULT_MAX_BINS, DEFAULT_RELATIVE_ACCURACY,
    MAX_EXACT_LIMIT, MAX_MAX_BINS,
};

/// Streaming quantiles: exact (numpy's definitions) while at most `exact_limit` values were
/// added, then a DDSketch whose answers are within `relative_accuracy` of the exact ones,
/// in at most `max_bins` bins. Mergeable, serialisable, safe to share between threads.
#[pyclass(name = "QuantileSketch", module = "straggler", frozen)]
pub struct PyQuantileSketch {
    inner: Mutex<QuantileSketch>,
}

impl PyQuantileSketch {
    fn lock(&self) -> MutexGuard<'_, QuantileSketch> {
        // Nothing panics while holding the lock; if something ever did, the sketch is still
        // consistent (every mutation validates first), so keep serving it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` under the lock: at once when it is free, else after releasing the
    /// interpreter, so that a thread waiting here never blocks the others.
    fn with<R, F>(&self, py: Python<'_>, f: F) -> R
    where
        F: FnOnce(&mut QuantileSketch) -> R + Send,
        R: Send,
    {
        match self.inner.try_lock() {
            Ok(mut guard) => f(&mut guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => f(&mut poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => py.detach(|| f(&mut self.lock())),
        }
    }

    fn snapshot(&self, py: Python<'_>) -> QuantileSketch {
        self.with(py, |sketch| sketch.clone())
    }
}

/// The values of a 1-D column (see `floats_arg`: contiguous once converted) as a slice.
fn with_values<R>(values: &PyReadonlyArray1<'_, f64>, f: impl FnOnce(&[f64]) -> R) -> R {
    match values.as_slice() {
        Ok(slice) => f(slice),
        Err(_) => f(&values.as_array().iter().copied().collect::<Vec<f64>>()),
    }
}

#[pymethods]
impl PyQuantileSketch {
    #[new]
    #[pyo3(
        signature = (relative_accuracy = DEFAULT_RELATIVE_ACCURACY, max_bins = DEFAULT_MAX_BINS as i64, exact_limit = DEFAULT_EXACT_LIMIT as i64),
        text_signature = "(relative_accuracy=0.01, max_bins=2048, exact_limit=1024)"
    )]
    fn new(relative_accuracy: f64, max_bins: i64, exact_limit: i64) -> PyResult<Self> {
        // Taken as i64 so that a negative size is a ValueError naming it, like any bad size.
        let max_bins = usize::try_from(max_bins).map_err(|_| {
            Error::value(
                "max_bins",
                format!("must be in [1, {MAX_MAX_BINS}], got {max_bins}"),
            )
        })?;
        let exact_limit = usize::try_from(exact_limit).map_err(|_| {
            Error::value(
                "exact_limit",
                format!("must be in [0, {MAX_EXACT_LIMIT}], got {exact_limit}"),
            )
        })?;
        let sketch = QuantileSketch::new(relative_accuracy, max_bins, exact_limit)?;
        Ok(PyQuantileSketch {
            inner: Mutex::new(sketch),
        })
    }

    /// Adds one finite value.
    fn add(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let x = float_arg(x, "x")?;
        Ok(self.with(py, |sketch| sketch.add(x))?)
    }

    /// Adds every value of a 1-D sequence or array (any real dtype), or none if one is NaN
    /// or infinite. The interpreter is released meanwhile.
    fn add_many(&self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let values = floats_arg(values, "values")?;
        with_values(&values, |slice| py.detach(|| self.lock().add_many(slice)))?;
        Ok(())
    }

    /// The q-quantile; `method` is "lower", "higher" or "linear" (numpy's meanings).
    #[pyo3(signature = (q, method = "lower"))]
    fn quantile(&self, py: Python<'_>, q: &Bound<'_, PyAny>, method: &str) -> PyResult<f64> {
        let q = float_arg(q, "q")?;
        let method = Method::parse(method)?;
        Ok(self.with(py, |sketch| sketch.quantile(q, method))?)
    }

    /// The quantile of each q, as a float64 array.
    #[pyo3(signature = (qs, method = "lower"))]
    fn quantiles<'py>(
        &self,
        py: Python<'py>,
        qs: &Bound<'py, PyAny>,
        method: &str,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let qs = floats_arg(qs, "qs")?;
        let method = Method::parse(method)?;
        let answers = with_values(&qs, |qs| py.detach(|| self.lock().quantiles(qs, method)))?;
        Ok(PyArray1::from_vec(py, answers))
    }

    /// The number of values added.
    #[getter]
    fn count(&self, py: Python<'_>) -> u64 {
        self.with(py, |sketch| sketch.count())
    }

    /// The sum of the values added.
    #[getter]
    fn sum(&self, py: Python<'_>) -> f64 {
        self.with(py, |sketch| sketch.sum())
    }

    /// The smallest value added (nan when empty).
    #[getter]
    fn min(&self, py: Python<'_>) -> f64 {
        self.with(py, |sketch| sketch.min())
    }

    /// The largest value added (nan when empty).
    #[getter]
    fn max(&self, py: Python<'_>) -> f64 {
        self.with(py, |sketch| sketch.max())
    }

    #[getter]
    fn relative_accuracy(&self, py: Python<'_>) -> f64 {
        self.with(py, |sketch| sketch.relative_accuracy())
    }

    #[getter]
    fn max_bins(&self, py: Python<'_>) -> usize {
        self.with(py, |sketch| sketch.max_bins())
    }

    #[getter]
    fn exact_limit(&self, py: Python<'_>) -> usize {
        self.with(py, |sketch| sketch.exact_limit())
    }

    /// True while every value is kept (count <= exact_limit).
    #[getter]
    fn is_exact(&self, py: Python<'_>) -> bool {
        self.with(py, |sketch| sketch.is_exact())
    }

    /// The bytes the sketch holds in memory.
    #[getter]
    fn memory_bytes(&self, py: Python<'_>) -> usize {
        self.with(py, |sketch| sketch.memory_bytes())
    }

    /// Adds `other`'s values to this sketch, in place. `s.merge(s)` doubles `s`.
    fn merge(&self, py: Python<'_>, other: &Bound<'_, Self>) -> PyResult<()> {
        // Copy the other first: the two locks are never held together, so two threads
        // merging a into b and b into a cannot deadlock, and merging with itself works.
        let other = other.get();
        py.detach(|| {
            let snapshot = other.lock().clone();
            self.lock().merge(&snapshot)
        })?;
        Ok(())
    }

    /// The versioned binary encoding (settings, count, sum, min, max, values or bins).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = self.with(py, |sketch| sketch.to_bytes());
        PyBytes::new(py, &bytes)
    }

    /// The sketch encoded by `to_bytes`; ValueError for anything else.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let sketch = py.detach(|| QuantileSketch::from_bytes(data))?;
        Ok(PyQuantileSketch {
            inner: Mutex::new(sketch),
        })
    }

    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let from_bytes = py.get_type::<Self>().getattr("from_bytes")?;
        Ok((from_bytes, (self.to_bytes(py),)))
    }

    fn __copy__(&self, py: Python<'_>) -> Self {
        PyQuantileSketch {
            inner: Mutex::new(self.snapshot(py)),
        }
    }

    fn __deepcopy__(&self, py: Python<'_>, _memo: &Bound<'_, PyAny>) -> Self {
        self.__copy__(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let sketch = self.snapshot(py);
        format!(
            "QuantileSketch(relative_accuracy={:?}, max_bins={}, exact_limit={}, count={}, min={:?}, max={:?})",
            sketch.relative_accuracy(),
            sketch.max_bins(),
            sketch.exact_limit(),
            sketch.count(),
            sketch.min(),
            sketch.max()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyQuantileSketch>()
}
