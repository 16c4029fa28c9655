//! The batch kernels behind `add_many`: one pass that validates a batch and finds its sum and
//! extremes, and one that turns values into bin slots. Both are written as straight-line,
//! branch-free loops that the compiler vectorises; on x86-64 they are compiled a second and
//! third time for AVX2 and AVX-512 and picked at run time. The arithmetic is the same plain
//! `*`/`+` in every version (no fused multiply-add), so every version gives the same bits.

use super::mapping::{key_as_f64, scaled_log2_of_normal};
use super::show;
use crate::error::{Error, Result};

const SIGN_BIT: u64 = 1 << 63;
const EXPONENT_MASK: u64 = 0x7ff0_0000_0000_0000;
const ROUNDER: f64 = 6_755_399_441_055_744.0;

/// What one pass over a batch learns: its sum and extremes, and where the signs change.
#[derive(Debug, Clone, Copy)]
pub struct BatchSummary {
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The smallest positive value (+inf when none) and the negative value closest to zero
    /// (-inf when none): with `min` and `max` they bound the keys of each store.
    pub min_positive: f64,
    pub max_negative: f64,
}

/// Rejects a batch holding a NaN or an infinity (naming the first), else summarises it.
pub fn summarize(values: &[f64]) -> Result<BatchSummary> {
    let (summary, non_finite) = dispatch_summarize(values);
    if non_finite {
        let (index, x) = values
            .iter()
            .enumerate()
            .find(|(_, x)| !x.is_finite())
            .map_or((0, f64::NAN), |(i, x)| (i, *x));
        return Err(Error::value(
            "values",
            format!("must all be finite, got {} at index {index}", show(x)),
        ));
    }
    Ok(summary)
}

/// Eight independent accumulators per statistic: no loop-carried latency, and vector lanes.
#[inline(always)]
fn summarize_lanes(values: &[f64]) -> (BatchSummary, bool) {
    const LANES: usize = 8;
    let mut sum = [0.0f64; LANES];
    let mut min = [f64::INFINITY; LANES];
    let mut max = [f64::NEG_INFINITY; LANES];
    let mut min_positive = [f64::INFINITY; LANES];
    let mut max_negative = [f64::NEG_INFINITY; LANES];
    let mut non_finite = [false; LANES];
    let mut lane = |j: usize, x: f64| {
        non_finite[j] |= x.to_bits() & EXPONENT_MASK == EXPONENT_MASK;
        sum[j] += x;
        min[j] = if x < min[j] { x } else { min[j] };
        max[j] = if x > max[j] { x } else { max[j] };
        let positive = if x > 0.0 { x } else { f64::INFINITY };
        min_positive[j] = if positive < min_positive[j] {
            positive
        } else {
            min_positive[j]
        };
        let negative = if x < 0.0 { x } else { f64::NEG_INFINITY };
        max_negative[j] = if negative > max_negative[j] {
            negative
        } else {
            max_negative[j]
        };
    };
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (j, &x) in chunk.iter().enumerate() {
            lane(j, x);
        }
    }
    for (j, &x) in rest.iter().enumerate() {
        lane(j, x);
    }
    let summary = BatchSummary {
        sum: sum.iter().sum(),
        min: min.iter().copied().fold(f64::INFINITY, f64::min),
        max: max.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        min_positive: min_positive.iter().copied().fold(f64::INFINITY, f64::min),
        max_negative: max_negative
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max),
    };
    (summary, non_finite.iter().any(|&bad| bad))
}

/// The largest multiplier for which every positive normal value's key fits in an i32 (with
/// room to spare): the keys are at most `multiplier * 1024` in magnitude.
pub fn keys_fit_i32(multiplier: f64) -> bool {
    multiplier * 1100.0 < 1_073_741_824.0
}

/// The fused pass over a block of positive normal values: sums and extremes (as `summarize`,
/// the same lanes in the same order, so the same bits) and the key of every value, in one
/// read of the block. The flag is set when some value is not a positive normal finite number
/// (zero, negative, subnormal, infinite or NaN): the block must then take the general path,
/// and `keys` and the summary mean nothing. The multiplier must pass `keys_fit_i32`.
pub fn positive_keys(values: &[f64], multiplier: f64, keys: &mut [i32]) -> (BatchSummary, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU has the features the function is compiled for (checked above).
            return unsafe { positive_keys_avx512(values, multiplier, keys) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { positive_keys_avx2(values, multiplier, keys) };
        }
    }
    positive_keys_lanes::<false>(values, multiplier, keys)
}

/// `NATIVE_FLOOR`: the instruction set has a vector floor (exact, so the same keys as
/// `mapping::floor_small`, which the portable build keeps: there `floor` is a libm call).
#[inline(always)]
fn positive_keys_lanes<const NATIVE_FLOOR: bool>(
    values: &[f64],
    multiplier: f64,
    keys: &mut [i32],
) -> (BatchSummary, bool) {
    const LANES: usize = 8;
    let mut sum = [0.0f64; LANES];
    let mut min = [f64::INFINITY; LANES];
    let mut max = [f64::NEG_INFINITY; LANES];
    let mut lane = |j: usize, x: f64, key: &mut i32| {
        sum[j] += x;
        min[j] = if x < min[j] { x } else { min[j] };
        max[j] = if x > max[j] { x } else { max[j] };
        let y = scaled_log2_of_normal(x.to_bits(), multiplier);
        // The key is far inside i32: after adding 1.5 * 2^52 to the integral floor, its low 32
        // bits are the key in two's complement.
        *key = if NATIVE_FLOOR {
            (y.floor() + ROUNDER).to_bits() as u32 as i32
        } else {
            // floor as `mapping::floor_small` computes it: the nearest integer, less one if it
            // is above.
            let rounded = y + ROUNDER;
            let above = rounded - ROUNDER > y;
            (rounded.to_bits() as u32 as i32).wrapping_sub(above as i32)
        };
    };
    let n = values.len().min(keys.len());
    let (values, keys) = (&values[..n], &mut keys[..n]);
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    let mut key_chunks = keys.chunks_exact_mut(LANES);
    for (chunk, key_chunk) in chunks.zip(&mut key_chunks) {
        for (j, (&x, key)) in chunk.iter().zip(key_chunk.iter_mut()).enumerate() {
            lane(j, x, key);
        }
    }
    for (j, (&x, key)) in rest
        .iter()
        .zip(key_chunks.into_remainder().iter_mut())
        .enumerate()
    {
        lane(j, x, key);
    }
    let summary = BatchSummary {
        sum: sum.iter().sum(),
        min: min.iter().copied().fold(f64::INFINITY, f64::min),
        max: max.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        min_positive: min.iter().copied().fold(f64::INFINITY, f64::min),
        max_negative: f64::NEG_INFINITY,
    };
    // Validation without a per-value test: the extremes catch zeros, subnormals, negatives
    // and infinities, and a NaN (which no comparison lets into the extremes) makes its lane's
    // sum NaN. A finite sum that overflows also flags the block: the general path takes it.
    let inside = summary.min >= f64::MIN_POSITIVE
        && summary.max < f64::INFINITY
        && sum.iter().all(|s| s.is_finite());
    (summary, !inside)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn positive_keys_avx512(
    values: &[f64],
    multiplier: f64,
    keys: &mut [i32],
) -> (BatchSummary, bool) {
    positive_keys_lanes::<true>(values, multiplier, keys)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn positive_keys_avx2(
    values: &[f64],
    multiplier: f64,
    keys: &mut [i32],
) -> (BatchSummary, bool) {
    positive_keys_lanes::<true>(values, multiplier, keys)
}

/// Where each value of a batch goes: the positive store's window takes slots
/// `0..positive_len`, the negative store's the next `negative_len`; zeros and values whose key
/// falls outside both windows get the markers below.
#[derive(Debug, Clone, Copy)]
pub struct SlotPlan {
    pub multiplier: f64,
    /// Keys below the floor count at the floor (collapsed bins); `offset` is the key of a
    /// window's first counter.
    pub positive_floor: f64,
    pub positive_offset: f64,
    pub positive_len: usize,
    pub negative_floor: f64,
    pub negative_offset: f64,
    pub negative_len: usize,
}

pub const SLOT_ZERO: i32 = -2;
pub const SLOT_OUTSIDE: i32 = -1;

#[inline(always)]
fn slots_lanes(values: &[f64], plan: &SlotPlan, slots: &mut [i32]) {
    let positive_len = plan.positive_len as f64;
    let negative_len = plan.negative_len as f64;
    for (&x, slot) in values.iter().zip(slots.iter_mut()) {
        let bits = x.to_bits();
        let magnitude = bits & !SIGN_BIT;
        let key = key_as_f64(magnitude, plan.multiplier);
        let positive = (if key > plan.positive_floor {
            key
        } else {
            plan.positive_floor
        }) - plan.positive_offset;
        let positive = if positive >= 0.0 && positive < positive_len {
            positive
        } else {
            SLOT_OUTSIDE as f64
        };
        let negative = (if -key > plan.negative_floor {
            -key
        } else {
            plan.negative_floor
        }) - plan.negative_offset;
        let negative = if negative >= 0.0 && negative < negative_len {
            negative + positive_len
        } else {
            SLOT_OUTSIDE as f64
        };
        let chosen = if bits & SIGN_BIT != 0 {
            negative
        } else {
            positive
        };
        let chosen = if magnitude == 0 {
            SLOT_ZERO as f64
        } else {
            chosen
        };
        // chosen is integral and far inside i32: after adding 1.5 * 2^52 its low 32 bits
        // are the integer in two's complement. A plain `as i32` would saturate, lane by lane.
        *slot = (chosen + ROUNDER).to_bits() as u32 as i32;
    }
}

/// Fills `slots[i]` for `values[i]` (the two have the same length).
pub fn slots(values: &[f64], plan: &SlotPlan, slots: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU has the features the function is compiled for (checked above).
            return unsafe { slots_avx512(values, plan, slots) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { slots_avx2(values, plan, slots) };
        }
    }
    slots_lanes(values, plan, slots)
}

fn dispatch_summarize(values: &[f64]) -> (BatchSummary, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for (checked above).
            return unsafe { summarize_avx512(values) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { summarize_avx2(values) };
        }
    }
    summarize_lanes(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn slots_avx512(values: &[f64], plan: &SlotPlan, slots: &mut [i32]) {
    slots_lanes(values, plan, slots)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn slots_avx2(values: &[f64], plan: &SlotPlan, slots: &mut [i32]) {
    slots_lanes(values, plan, slots)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn summarize_avx512(values: &[f64]) -> (BatchSummary, bool) {
    summarize_lanes(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn summarize_avx2(values: &[f64]) -> (BatchSummary, bool) {
    summarize_lanes(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sketch::mapping::CubicMapping;

    fn plan(mapping: &CubicMapping) -> SlotPlan {
        SlotPlan {
            multiplier: mapping.multiplier(),
            positive_floor: -100.0,
            positive_offset: -200.0,
            positive_len: 400,
            negative_floor: -50.0,
            negative_offset: -60.0,
            negative_len: 100,
        }
    }

    #[test]
    fn every_instruction_set_gives_the_scalar_slots() {
        let mapping = CubicMapping::new(0.01);
        let plan = plan(&mapping);
        let mut values = vec![0.0, -0.0, 1.0, -1.0, 1e-300, 5e-324, 1e300, -2.5, 3.0];
        let mut x = 1e-3;
        while x < 1e3 {
            values.push(x);
            values.push(-x);
            x *= 1.0037;
        }
        let mut dispatched = vec![0; values.len()];
        slots(&values, &plan, &mut dispatched);
        let mut portable = vec![0; values.len()];
        slots_lanes(&values, &plan, &mut portable);
        assert_eq!(dispatched, portable);
        for (&x, &slot) in values.iter().zip(&dispatched) {
            let expected = if x == 0.0 {
                SLOT_ZERO
            } else if x > 0.0 {
                let key = mapping.key(x).max(-100) + 200;
                if (0..400).contains(&key) {
                    key as i32
                } else {
                    SLOT_OUTSIDE
                }
            } else {
                let key = (-mapping.key(x)).max(-50) + 60;
                if (0..100).contains(&key) {
                    key as i32 + 400
                } else {
                    SLOT_OUTSIDE
                }
            };
            assert_eq!(slot, expected, "{x}");
        }
        // Large values fall outside this plan's windows; tiny ones collapse to the floor.
        assert_eq!(dispatched[6], SLOT_OUTSIDE);
        assert_eq!(dispatched[4], 100);
    }

    /// Positive normal values over the whole range, the ends, and both sides of bin bounds.
    fn positive_normals(mapping: &CubicMapping) -> Vec<f64> {
        let mut values = vec![f64::MIN_POSITIVE, f64::MAX, 1.0, 2.0, 0.5, 3.0, 1e-300];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // A normal exponent and a random significand, straight into the bits.
            let exponent = 1 + (state >> 52) % 2046;
            values.push(f64::from_bits((exponent << 52) | (state & ((1 << 52) - 1))));
        }
        for key in -3000..3000 {
            let bound = mapping.lower_bound(key);
            if (f64::MIN_POSITIVE..f64::MAX).contains(&bound) {
                values.push(bound);
                values.push(f64::from_bits(bound.to_bits() + 1));
                values.push(f64::from_bits(bound.to_bits() - 1));
            }
        }
        values
    }

    #[test]
    fn fused_keys_are_the_mapping_keys_in_every_instruction_set() {
        for alpha in [1e-6, 1e-4, 0.01, 0.05, 0.5] {
            let mapping = CubicMapping::new(alpha);
            let multiplier = mapping.multiplier();
            assert!(keys_fit_i32(multiplier));
            let values = positive_normals(&mapping);
            // 7 values short of a whole number of lanes, so the remainder is run too.
            let values = &values[..values.len() / 8 * 8 - 7];
            let expected: Vec<i32> = values
                .iter()
                .map(|&x| i32::try_from(mapping.key(x)).expect("fits"))
                .collect();
            // (The sum of values up to f64::MAX overflows, which flags the block: the keys are
            // computed all the same.)
            let mut dispatched = vec![0; values.len()];
            positive_keys(values, multiplier, &mut dispatched);
            assert_eq!(dispatched, expected, "alpha {alpha}");
            for native_floor in [false, true] {
                let mut portable = vec![0; values.len()];
                if native_floor {
                    positive_keys_lanes::<true>(values, multiplier, &mut portable);
                } else {
                    positive_keys_lanes::<false>(values, multiplier, &mut portable);
                }
                assert_eq!(
                    portable, expected,
                    "alpha {alpha}, native floor {native_floor}"
                );
            }
            // The same sum (same lanes, same order), extremes and positive minimum.
            let values: Vec<f64> = values.iter().copied().filter(|&x| x < 1e300).collect();
            let (summary, outside) = positive_keys(&values, multiplier, &mut dispatched);
            assert!(!outside);
            let (general, _) = dispatch_summarize(&values);
            assert_eq!(summary.sum.to_bits(), general.sum.to_bits());
            assert_eq!((summary.min, summary.max), (general.min, general.max));
            assert_eq!(summary.min_positive, general.min_positive);
        }
        assert!(!keys_fit_i32(CubicMapping::new(1e-9).multiplier()));
    }

    #[test]
    fn fused_pass_flags_every_value_that_is_not_positive_normal_finite() {
        let multiplier = CubicMapping::new(0.01).multiplier();
        let bad = [
            0.0,
            -0.0,
            -1.0,
            -f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::MIN_POSITIVE / 2.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
        ];
        for x in bad {
            // In the vectorised body, in the remainder, and alone.
            for (len, at) in [(64, 13), (64, 63), (21, 19), (1, 0)] {
                let mut values = vec![1.5; len];
                values[at] = x;
                let mut keys = vec![0; len];
                let (_, outside) = positive_keys(&values, multiplier, &mut keys);
                assert!(outside, "{x} at {at} of {len}");
                let (_, outside) = positive_keys_lanes::<false>(&values, multiplier, &mut keys);
                assert!(outside, "portable: {x} at {at} of {len}");
            }
        }
        // A sum that overflows sends the block to the general path too.
        let mut keys = vec![0; 32];
        assert!(positive_keys(&[f64::MAX; 32], multiplier, &mut keys).1);
        assert!(!positive_keys(&[f64::MAX; 1], multiplier, &mut keys).1);
        assert!(!positive_keys(&[], multiplier, &mut []).1);
    }

    #[test]
    fn summary_finds_sum_extremes_and_sign_boundaries() {
        let values = [3.0, -2.0, 0.0, 5.0, -0.5, 0.25, 7.0, -9.0, 1.0, 2.0];
        let (summary, non_finite) = dispatch_summarize(&values);
        assert!(!non_finite);
        assert_eq!(summary.sum, values.iter().sum::<f64>());
        assert_eq!((summary.min, summary.max), (-9.0, 7.0));
        assert_eq!((summary.min_positive, summary.max_negative), (0.25, -0.5));
        let (_, portable_bad) = summarize_lanes(&[1.0, f64::INFINITY]);
        assert!(portable_bad);
    }

    #[test]
    fn summarize_names_the_first_non_finite_value() {
        let mut values = vec![1.0; 100];
        values[37] = f64::NEG_INFINITY;
        values[60] = f64::NAN;
        let err = summarize(&values).expect_err("non-finite");
        assert_eq!(
            err.to_string(),
            "values must all be finite, got -inf at index 37"
        );
    }
}
