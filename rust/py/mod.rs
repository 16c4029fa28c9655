//! The thin PyO3 layer: argument conversion, releasing the interpreter around batch work,
//! and the mapping of the core's `Error` onto Python exceptions.

pub mod detector;
pub mod interrupt;
pub mod sketch;

use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::PyErr;

use crate::error::Error;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::Value(msg) => PyValueError::new_err(msg),
            Error::Type(msg) => PyTypeError::new_err(msg),
            key @ Error::Key { .. } => PyKeyError::new_err(key.to_string()),
        }
    }
}
