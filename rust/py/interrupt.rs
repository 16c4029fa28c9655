//! One step of stopping an attempt in a thread of the executor's process, done while holding
//! the interpreter so that nothing runs between its lookup and its action.

use std::os::raw::c_long;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

/// `interrupt_inside(inside, key, exception)`: if `key` is in the dict `inside` (attempt key
/// → thread id), raise `exception` (an exception class) in that thread at its next bytecode
/// and return True; else return False and set nothing.
///
/// The lookup and the setting happen with the interpreter held throughout and run no Python
/// code (an int key's hash and an int's value are read in C), so no thread can remove the key
/// in between: a thread that removed its key before this call never receives the exception.
#[pyfunction]
fn interrupt_inside(
    inside: &Bound<'_, PyDict>,
    key: &Bound<'_, PyAny>,
    exception: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let is_exception_class = exception
        .cast::<PyType>()
        .map(|t| {
            t.is_subclass_of::<pyo3::exceptions::PyBaseException>()
                .unwrap_or(false)
        })
        .unwrap_or(false);
    if !is_exception_class {
        return Err(PyTypeError::new_err(format!(
            "exception must be an exception class, got {}",
            exception.repr()?
        )));
    }
    if !key.is_exact_instance_of::<pyo3::types::PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "key must be an int, got {}",
            key.repr()?
        )));
    }
    let Some(thread) = inside.get_item(key)? else {
        return Ok(false);
    };
    let thread: u64 = thread.extract()?;
    // SAFETY: the interpreter is held (we are in a #[pyfunction]); `exception` is a live
    // exception class, borrowed for the call (CPython takes its own reference).
    let set = unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(thread as c_long, exception.as_ptr()) };
    Ok(set == 1)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(interrupt_inside, m)?)
}
