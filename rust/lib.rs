//! straggler's core: streaming quantile sketches, the attempt table and the speculation
//! policies, as plain Rust. The Python module (`straggler._core`) is built only with the
//! `python` feature; this file lists what Python sees and nothing else.

pub mod detector;
pub mod error;
pub mod sketch;

#[cfg(feature = "python")]
mod py;

#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _core(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    use pyo3::types::PyModuleMethods;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    py::sketch::register(m)?;
    py::detector::register(m)?;
    py::interrupt::register(m)?;
    Ok(())
}
