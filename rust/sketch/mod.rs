//! Streaming quantiles. PLACEHOLDER: exact-only stand-in with the agreed API, replaced by the
//! DDSketch implementation.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Lower,
    Higher,
    Linear,
}

impl Method {
    pub fn parse(name: &str) -> Result<Method> {
        match name {
            "lower" => Ok(Method::Lower),
            "higher" => Ok(Method::Higher),
            "linear" => Ok(Method::Linear),
            other => Err(Error::value(
                "method",
                format!("must be 'lower', 'higher' or 'linear', got {other:?}"),
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct QuantileSketch {
    values: Vec<f64>,
    sum: f64,
}

impl QuantileSketch {
    pub fn new(_relative_accuracy: f64, _max_bins: usize, _exact_limit: usize) -> Result<Self> {
        Ok(QuantileSketch {
            values: Vec::new(),
            sum: 0.0,
        })
    }
    pub fn add(&mut self, x: f64) -> Result<()> {
        if !x.is_finite() {
            return Err(Error::value("value", format!("must be finite, got {x}")));
        }
        let at = self.values.partition_point(|v| *v < x);
        self.values.insert(at, x);
        self.sum += x;
        Ok(())
    }
    pub fn count(&self) -> u64 {
        self.values.len() as u64
    }
    pub fn value_at_rank(&self, rank: u64) -> f64 {
        if self.values.is_empty() {
            return f64::NAN;
        }
        self.values[(rank as usize).min(self.values.len() - 1)]
    }
    pub fn quantile(&self, q: f64, method: Method) -> Result<f64> {
        if !(0.0..=1.0).contains(&q) {
            return Err(Error::value("q", format!("must be in [0, 1], got {q}")));
        }
        let n = self.values.len();
        if n == 0 {
            return Ok(f64::NAN);
        }
        let v = (n - 1) as f64 * q;
        Ok(match method {
            Method::Lower => self.values[v.floor() as usize],
            Method::Higher => self.values[(v.ceil() as usize).min(n - 1)],
            Method::Linear => {
                let lo = v.floor() as usize;
                if lo >= n - 1 {
                    self.values[n - 1]
                } else {
                    let (a, b, t) = (self.values[lo], self.values[lo + 1], v - lo as f64);
                    if t >= 0.5 {
                        b - (b - a) * (1.0 - t)
                    } else {
                        a + (b - a) * t
                    }
                }
            }
        })
    }
    pub fn memory_bytes(&self) -> usize {
        self.values.capacity() * 8
    }
}
