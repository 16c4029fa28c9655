//! The one error type of the core. Plain Rust: the binding layer maps it onto Python's
//! exceptions (`Value` → ValueError, `Key` → KeyError, `Type` → TypeError).

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A value that is out of range or inconsistent with the state. The message names the
    /// argument and shows the value.
    Value(String),
    /// An id that was never handed out (`kind` is "task", "attempt", "stage", ...).
    Key { kind: &'static str, id: i64 },
    /// An argument of the wrong kind.
    Type(String),
}

impl Error {
    /// `Error::value("q", format!("must be in [0, 1], got {q}"))` → "q must be in [0, 1], got 2".
    pub fn value(arg: &str, msg: impl fmt::Display) -> Self {
        Error::Value(format!("{arg} {msg}"))
    }

    pub fn key(kind: &'static str, id: i64) -> Self {
        Error::Key { kind, id }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Value(msg) | Error::Type(msg) => f.write_str(msg),
            Error::Key { kind, id } => write!(f, "unknown {kind} id {id}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// A float as Python prints it ("nan", "inf", "1.0", "1e-09" aside), for error messages that
/// show the caller's value.
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        "nan".to_string()
    } else {
        format!("{x:?}")
    }
}
