//! The bytes format of a `QuantileSketch`. Little-endian; integers are LEB128 varints (keys
//! zigzag-encoded), so the small counts of most bins take one or two bytes.
//!
//! ```text
//! magic "SQSK" | version u8 (1) | mode u8 (0 exact, 1 bins)
//! relative_accuracy f64 | max_bins varint | exact_limit varint
//! count varint | sum f64 | min f64 | max f64
//! exact: count × f64, sorted
//! bins:  zeros varint | negative store | positive store
//! store: width varint | (if width > 0) first key zigzag varint | width × count varint
//! ```
//!
//! Decoding checks everything it relies on (settings, counts adding up, bins within the
//! mapping's key range, sorted exact values, no trailing bytes): bad input is an
//! `Error::Value` naming `data`, never a panic or a huge allocation.

use std::cmp::Ordering;

use super::store::Store;
use super::QuantileSketch;
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"SQSK";
const VERSION: u8 = 1;
const MODE_EXACT: u8 = 0;
const MODE_BINS: u8 = 1;

impl QuantileSketch {
    pub fn to_bytes(&self) -> Vec<u8> {
        let exact = self.is_exact();
        let mut out = Vec::with_capacity(
            64 + if exact {
                8 * self.exact.len()
            } else {
                2 * self.bin_count() + 20
            },
        );
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(if exact { MODE_EXACT } else { MODE_BINS });
        out.extend_from_slice(&self.relative_accuracy.to_le_bytes());
        put_varint(&mut out, self.max_bins as u64);
        put_varint(&mut out, self.exact_limit as u64);
        put_varint(&mut out, self.count);
        for x in [self.sum, self.min, self.max] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        if exact {
            for x in &self.exact {
                out.extend_from_slice(&x.to_le_bytes());
            }
        } else {
            put_varint(&mut out, self.zeros);
            put_store(&mut out, &self.negative);
            put_store(&mut out, &self.positive);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(invalid("it does not start with the QuantileSketch magic"));
        }
        let version = reader.u8()?;
        if version != VERSION {
            return Err(invalid(format!("unsupported version {version}")));
        }
        let mode = reader.u8()?;
        let relative_accuracy = reader.f64()?;
        let max_bins = reader.usize()?;
        let exact_limit = reader.usize()?;
        let mut sketch = QuantileSketch::new(relative_accuracy, max_bins, exact_limit)
            .map_err(|err| invalid(format!("bad settings: {err}")))?;
        let count = reader.varint()?;
        let sum = reader.f64()?;
        let min = reader.f64()?;
        let max = reader.f64()?;
        match mode {
            MODE_EXACT => {
                if count > exact_limit as u64 {
                    return Err(invalid("exact values past the exact limit"));
                }
                // count <= exact_limit <= MAX_EXACT_LIMIT, so this neither overflows nor
                // allocates more than the input can back.
                let len = count as usize;
                if reader.remaining() < 8 * len {
                    return Err(invalid("truncated"));
                }
                let mut values = Vec::with_capacity(len);
                for _ in 0..len {
                    let x = reader.f64()?;
                    if !x.is_finite() {
                        return Err(invalid("a value is not finite"));
                    }
                    if values
                        .last()
                        .is_some_and(|last: &f64| last.total_cmp(&x).is_gt())
                    {
                        return Err(invalid("values are not sorted"));
                    }
                    values.push(x);
                }
                match (values.first(), values.last()) {
                    (Some(&first), Some(&last)) => {
                        if first != min || last != max {
                            return Err(invalid("min or max disagree with the values"));
                        }
                    }
                    _ => {
                        if !min.is_nan() || !max.is_nan() || sum != 0.0 {
                            return Err(invalid("an empty sketch with a min, max or sum"));
                        }
                    }
                }
                sketch.exact = values;
            }
            MODE_BINS => {
                if count <= exact_limit as u64 {
                    return Err(invalid("bins for a count within the exact limit"));
                }
                let (first_key, last_key) = sketch.mapping.key_range();
                let zeros = reader.varint()?;
                let negative = read_store(&mut reader, max_bins, -last_key, -first_key)?;
                let positive = read_store(&mut reader, max_bins, first_key, last_key)?;
                let total = [negative.total(), positive.total()]
                    .into_iter()
                    .try_fold(zeros, u64::checked_add);
                if total != Some(count) {
                    return Err(invalid("the bins do not add up to the count"));
                }
                let both_signs = negative.total() > 0 && positive.total() > 0;
                if negative.width() + positive.width() > max_bins.max(1 + both_signs as usize) {
                    return Err(invalid("more bins than max_bins"));
                }
                let signs_agree = (negative.total() > 0) == (min < 0.0)
                    && (positive.total() > 0) == (max > 0.0)
                    && (zeros == 0 || (min <= 0.0 && max >= 0.0));
                if !(min.is_finite() && max.is_finite() && min <= max && signs_agree) {
                    return Err(invalid("min and max disagree with the bins"));
                }
                // One value is both extremes (its quantiles answer min for q = 0 and 1).
                if count == 1 && min != max {
                    return Err(invalid("one value with a min unlike its max"));
                }
                // The extremes lie in the outer bins: the top bin of each store is never
                // collapsed, so it is exactly the bin of the value nearest +inf (max, or for
                // the negative store, its value nearest zero when max < 0); the bottom bin may
                // have absorbed lower ones, so it is at or above the bin of min.
                let mapping = &sketch.mapping;
                let extremes_agree = positive.range().is_none_or(|(lo, hi)| {
                    hi == mapping.key(max) && (min <= 0.0 || lo >= mapping.key(min))
                }) && negative.range().is_none_or(|(lo, hi)| {
                    lo >= -mapping.key(min) && (max >= 0.0 || hi == -mapping.key(max))
                });
                if !extremes_agree {
                    return Err(invalid("min or max lie outside the outer bins"));
                }
                sketch.zeros = zeros;
                sketch.negative = negative;
                sketch.positive = positive;
            }
            other => return Err(invalid(format!("unknown mode {other}"))),
        }
        if reader.remaining() != 0 {
            return Err(invalid(format!("{} trailing bytes", reader.remaining())));
        }
        check_sum(count, sum, min, max)?;
        sketch.count = count;
        sketch.sum = sum;
        sketch.min = min;
        sketch.max = max;
        Ok(sketch)
    }
}

/// The sum agrees with the count and the extremes, allowing for the rounding of any order of
/// summation: |error| <= (count - 1) × eps × Σ|x| <= count² × eps × max(|min|, |max|).
fn check_sum(count: u64, sum: f64, min: f64, max: f64) -> Result<()> {
    if count == 0 {
        // An empty sketch's min and max are NaN (checked with the exact values).
        return Ok(());
    }
    let exact = match count {
        // 0 + x is x, and 0 + a + b rounds once, in any order.
        1 => sum == min,
        2 => sum == min + max,
        _ => true,
    };
    let n = count as f64;
    let largest = min.abs().max(max.abs());
    // Every partial sum is within n × largest: only that much can overflow.
    let may_overflow = n * largest >= f64::MAX / 2.0;
    let bound = if sum.is_nan() {
        // Only an overflow to +inf meeting one to -inf gives NaN.
        may_overflow && min < 0.0 && max > 0.0
    } else if sum == f64::INFINITY {
        may_overflow && max > 0.0
    } else if sum == f64::NEG_INFINITY {
        may_overflow && min < 0.0
    } else {
        let slack = n * n * f64::EPSILON * largest;
        // A sum of values of one sign keeps that sign, whatever the rounding.
        (min < 0.0 || sum >= 0.0)
            && (max > 0.0 || sum <= 0.0)
            // A bound that is NaN (inf - inf for huge counts) holds: nothing is known.
            && sum.partial_cmp(&(n * min - slack)) != Some(Ordering::Less)
            && sum.partial_cmp(&(n * max + slack)) != Some(Ordering::Greater)
    };
    if exact && (count > 1 || sum.is_finite()) && bound {
        Ok(())
    } else {
        Err(invalid("the sum disagrees with the count, min and max"))
    }
}

fn invalid(reason: impl std::fmt::Display) -> Error {
    Error::value(
        "data",
        format!("is not a valid QuantileSketch encoding: {reason}"),
    )
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_store(out: &mut Vec<u8>, store: &Store) {
    put_varint(out, store.width() as u64);
    if let Some((first_key, _)) = store.range() {
        put_varint(out, zigzag(first_key));
        for count in store.dense_counts() {
            put_varint(out, count);
        }
    }
}

fn read_store(
    reader: &mut Reader<'_>,
    max_bins: usize,
    lowest: i64,
    highest: i64,
) -> Result<Store> {
    let width = reader.usize()?;
    if width == 0 {
        return Ok(Store::default());
    }
    // Each count takes at least one byte: this bounds the allocation by the input's size.
    if width > max_bins || width > reader.remaining() {
        return Err(invalid("a store is wider than max_bins or than the input"));
    }
    let first_key = unzigzag(reader.varint()?);
    let last_key = first_key.checked_add(width as i64 - 1);
    if first_key < lowest || last_key.is_none_or(|last| last > highest) {
        return Err(invalid("a bin key outside the mapping's range"));
    }
    let mut counts = Vec::with_capacity(width);
    let mut total = 0u64;
    for _ in 0..width {
        let count = reader.varint()?;
        total = total
            .checked_add(count)
            .ok_or_else(|| invalid("bin counts overflow"))?;
        counts.push(count);
    }
    if counts.first() == Some(&0) || counts.last() == Some(&0) {
        return Err(invalid("a store's first or last bin is empty"));
    }
    Ok(Store::from_dense(first_key, counts, total))
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len());
        let slice = end
            .and_then(|end| self.bytes.get(self.at..end))
            .ok_or_else(|| invalid("truncated"))?;
        self.at += len;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8> {
        self.take(1)?
            .first()
            .copied()
            .ok_or_else(|| invalid("truncated"))
    }

    fn f64(&mut self) -> Result<f64> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(f64::from_le_bytes(raw))
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may only hold the top bit of a u64.
            if shift == 63 && bits > 1 {
                return Err(invalid("a varint overflows 64 bits"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(invalid("a varint is longer than 10 bytes"))
    }

    fn usize(&mut self) -> Result<usize> {
        usize::try_from(self.varint()?).map_err(|_| invalid("a size does not fit in memory"))
    }
}
