//! The index mapping of the DDSketch: positive value → integer key, key → representative
//! value, such that every value of a key's bin is within the relative accuracy of the
//! representative.
//!
//! We follow DataDog's `CubicallyInterpolatedMapping` (sketches-java / sketches-go,
//! `ddsketch/mapping`): instead of `ln(x)`, take the binary exponent `e` and the significand
//! `1 + s` of `x = 2^e (1 + s)` straight from its bits, and approximate `log2(x)` by
//! `e + P(s)` with the cubic `P(s) = A s^3 + B s^2 + C s` (A = 6/35, B = -3/5, C = 10/7), which
//! is exact at the powers of two and increasing in between. The key is
//! `floor(m * (e + P(s)))`; the multiplier `m = 7 / (10 ln γ)`, γ = (1 + α) / (1 - α), is what
//! keeps every bin's upper/lower bound ratio at or below γ (the smallest slope of `e + P(s)`
//! against `ln x` is `C = 10/7`, at `s = 0`). The cost over the exact logarithmic mapping is
//! about 1% more bins, and no `ln` per value.
//!
//! Unlike the peer, subnormal values get their own exact exponent (they are scaled by 2^64
//! first), so every finite non-zero value has a key, and the representative of a bin is the
//! point of smallest worst-case relative error, the harmonic mean `2LU / (L + U)` of its bounds
//! (error at most `(U - L) / (U + L) <= α`), rather than `L (1 + α)`.

const A: f64 = 6.0 / 35.0;
const B: f64 = -3.0 / 5.0;
const C: f64 = 10.0 / 7.0;

const SIGNIFICAND_MASK: u64 = (1 << 52) - 1;
const EXPONENT_BIAS: i64 = 1023;
const ONE_BITS: u64 = 0x3ff0_0000_0000_0000;
/// Bits of the smallest positive normal f64 (2^-1022).
const MIN_NORMAL_BITS: u64 = 1 << 52;
/// 2^64: brings every subnormal into the normal range without rounding.
const SUBNORMAL_SCALE: f64 = 18_446_744_073_709_551_616.0;

/// The smallest relative accuracy we accept: below it the keys' rounding error (≈ 1e-13 / α
/// of a bin at the ends of the f64 range) would eat the guarantee.
pub const MIN_RELATIVE_ACCURACY: f64 = 1e-9;

#[derive(Debug, Clone, PartialEq)]
pub struct CubicMapping {
    multiplier: f64,
}

impl CubicMapping {
    /// `relative_accuracy` must already be validated to lie in
    /// [MIN_RELATIVE_ACCURACY, 1).
    pub fn new(relative_accuracy: f64) -> Self {
        // Build the bins for a slightly smaller α, so that the float rounding of the key (a few
        // ulps of `m * log2(x)`) and of the bounds cannot push an answer past α itself.
        let slack = 1e-9 + 1e-12 / relative_accuracy;
        let alpha = relative_accuracy * (1.0 - slack);
        // ln((1 + α) / (1 - α)), accurate for small α.
        let ln_gamma = alpha.ln_1p() - (-alpha).ln_1p();
        CubicMapping {
            multiplier: 7.0 / (10.0 * ln_gamma),
        }
    }

    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The key of a finite, non-zero value's magnitude, given as the bits of `|x|`.
    #[inline(always)]
    pub fn key_of_abs_bits(&self, abs_bits: u64) -> i64 {
        key_as_f64(abs_bits, self.multiplier) as i64
    }

    /// The key of a finite, non-zero value (its sign is ignored).
    #[inline]
    pub fn key(&self, x: f64) -> i64 {
        self.key_of_abs_bits(x.to_bits() & !(1 << 63))
    }

    /// The lower bound of the bin `key`, as (binary exponent, significand in [1, 2)).
    fn lower_bound_parts(&self, key: i64) -> (i64, f64) {
        let log2 = key as f64 / self.multiplier;
        let exponent = log2.floor();
        let s = inverse_cubic(log2 - exponent);
        (exponent as i64, 1.0 + s)
    }

    /// The lower bound of the bin `key` (inclusive).
    #[cfg(test)]
    pub fn lower_bound(&self, key: i64) -> f64 {
        let (exponent, significand) = self.lower_bound_parts(key);
        scale_by_power_of_two(significand, exponent)
    }

    /// The representative of the bin `key`: the harmonic mean of its bounds, the point whose
    /// worst relative error over the bin is smallest. Computed from the bounds' parts, so the
    /// top bin (whose upper bound is past f64::MAX) still gets a finite, accurate value.
    pub fn value(&self, key: i64) -> f64 {
        let (lower_exp, lower_sig) = self.lower_bound_parts(key);
        let (upper_exp, upper_sig) = self.lower_bound_parts(key.saturating_add(1));
        // ratio = L / U in (0, 1]; harmonic mean = L * 2 / (1 + L / U).
        let ratio = scale_by_power_of_two(lower_sig / upper_sig, lower_exp - upper_exp);
        scale_by_power_of_two(lower_sig * 2.0 / (1.0 + ratio), lower_exp)
    }

    /// The smallest and the largest key a finite non-zero value can have.
    pub fn key_range(&self) -> (i64, i64) {
        (self.key(f64::from_bits(1)), self.key(f64::MAX))
    }
}

/// The key of `|x|` (given as its bits; zero gives a meaningless key) as an integral f64.
///
/// Written with bit operations, selects and plain `*`/`+` only (no branch, no libm call, no
/// fused multiply-add), so that the batch path vectorises it and every instruction set gives
/// the same key as the one-value path. Subnormals are scaled by 2^64 into the normal range.
#[inline(always)]
pub fn key_as_f64(abs_bits: u64, multiplier: f64) -> f64 {
    let subnormal = abs_bits < MIN_NORMAL_BITS;
    let scaled =
        (f64::from_bits(abs_bits) * if subnormal { SUBNORMAL_SCALE } else { 1.0 }).to_bits();
    let bias = if subnormal {
        NORMAL_BIAS + 64.0
    } else {
        NORMAL_BIAS
    };
    floor_small(scaled_log2(scaled, bias) * multiplier)
}

/// `multiplier * (e + P(s))` for the bits of a positive normal value (not yet floored): the
/// arithmetic of `key_as_f64` for such a value, operation for operation, so that the batch
/// kernels that take this path give the same keys.
#[inline(always)]
pub fn scaled_log2_of_normal(bits: u64, multiplier: f64) -> f64 {
    scaled_log2(bits, NORMAL_BIAS) * multiplier
}

/// `e + P(s)` of the normal value with bits `scaled`, whose exponent is its biased exponent
/// less `bias - 2^52`.
#[inline(always)]
fn scaled_log2(scaled: u64, bias: f64) -> f64 {
    // The exponent as an f64, by the 2^52 trick: exact (every term is an integer below 2^53)
    // and vectorisable.
    let exponent = f64::from_bits((scaled >> 52) | TWO_POW_52_BITS) - bias;
    let s = f64::from_bits((scaled & SIGNIFICAND_MASK) | ONE_BITS) - 1.0;
    ((A * s + B) * s + C) * s + exponent
}

const TWO_POW_52: f64 = 4_503_599_627_370_496.0;
const TWO_POW_52_BITS: u64 = 0x4330_0000_0000_0000;
/// 2^52 plus the exponent bias: subtracted from `2^52 + biased exponent`, gives the exponent.
const NORMAL_BIAS: f64 = TWO_POW_52 + 1023.0;
/// 1.5 * 2^52: adding and subtracting it rounds an f64 below 2^51 to an integer.
const ROUNDER: f64 = 6_755_399_441_055_744.0;

/// floor(x) for |x| < 2^51 (keys are below 4e11), with adds and a compare only, so that it
/// vectorises even on plain SSE2 (where `f64::floor` is a libm call).
#[inline(always)]
fn floor_small(x: f64) -> f64 {
    let nearest = (x + ROUNDER) - ROUNDER;
    nearest - if nearest > x { 1.0 } else { 0.0 }
}

/// The `s` in [0, 1) with `P(s) = y`, for y in [0, 1). P is increasing on [0, 1] (its
/// derivative has no real root), so the cubic has exactly one real root there: Cardano's
/// formula, then one Newton step to recover the last bits.
fn inverse_cubic(y: f64) -> f64 {
    let delta0 = B * B - 3.0 * A * C;
    let delta1 = 2.0 * B * B * B - 9.0 * A * B * C - 27.0 * A * A * y;
    // delta0 < 0, so the square root's argument is positive and `cube` is never zero.
    let cube = ((delta1 - (delta1 * delta1 - 4.0 * delta0 * delta0 * delta0).sqrt()) / 2.0).cbrt();
    let s = -(B + cube + delta0 / cube) / (3.0 * A);
    let residual = ((A * s + B) * s + C) * s - y;
    let slope = (3.0 * A * s + 2.0 * B) * s + C;
    (s - residual / slope).clamp(0.0, 1.0)
}

/// x * 2^exponent for any exponent, with the rounding of a single multiplication whenever the
/// result is normal (powers of two are exact).
pub(crate) fn scale_by_power_of_two(mut x: f64, mut exponent: i64) -> f64 {
    // Step in chunks that stay within the normal exponent range of the factor.
    while exponent > 1023 {
        x *= power_of_two(1023);
        exponent -= 1023;
        if x.is_infinite() {
            return x;
        }
    }
    while exponent < -1022 {
        x *= power_of_two(-1022);
        exponent += 1022;
        if x == 0.0 {
            return x;
        }
    }
    x * power_of_two(exponent)
}

/// 2^exponent for exponent in [-1022, 1023].
fn power_of_two(exponent: i64) -> f64 {
    f64::from_bits(((exponent + EXPONENT_BIAS) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCURACIES: [f64; 8] = [1e-9, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.2, 0.9];

    /// Values spread over the whole finite range, including subnormals and the extremes.
    fn magnitudes() -> Vec<f64> {
        let mut values = vec![
            f64::from_bits(1),
            f64::MIN_POSITIVE,
            f64::MAX,
            1.0,
            2.0,
            0.5,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            // xorshift: a uniform exponent in [-1074, 1023] and a random significand.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let exponent = (state % 2098) as i64 - 1074;
            let significand = 1.0 + (state >> 11) as f64 / (1u64 << 53) as f64;
            values.push(scale_by_power_of_two(significand, exponent));
        }
        for decade in -300..=300 {
            values.push(10f64.powi(decade));
        }
        values.retain(|v| v.is_finite() && *v > 0.0);
        values
    }

    #[test]
    fn representative_is_within_relative_accuracy_over_all_magnitudes() {
        for alpha in ACCURACIES {
            let mapping = CubicMapping::new(alpha);
            for x in magnitudes() {
                // The top bin reaches past f64::MAX; the sketch clamps to its max.
                let estimate = mapping.value(mapping.key(x)).min(f64::MAX);
                assert!(
                    (estimate - x).abs() <= alpha * x,
                    "alpha {alpha}: x {x:e} -> {estimate:e}"
                );
            }
        }
    }

    #[test]
    fn value_lies_between_its_bin_bounds() {
        for alpha in ACCURACIES {
            let mapping = CubicMapping::new(alpha);
            for x in magnitudes() {
                let key = mapping.key(x);
                let lower = mapping.lower_bound(key);
                let upper = mapping.lower_bound(key + 1);
                // Allow the rounding of the inverse: a relative 1e-12 of the bound.
                assert!(
                    lower <= x * (1.0 + 1e-12),
                    "alpha {alpha}: {lower:e} > {x:e}"
                );
                assert!(
                    x <= upper * (1.0 + 1e-12),
                    "alpha {alpha}: {x:e} > {upper:e}"
                );
            }
        }
    }

    #[test]
    fn bin_bounds_ratio_is_at_most_gamma() {
        for alpha in ACCURACIES {
            let mapping = CubicMapping::new(alpha);
            let gamma = (1.0 + alpha) / (1.0 - alpha);
            let (first, last) = mapping.key_range();
            // Every bin of a window around 1 and near both ends of the range.
            let keys = (-3000..3000)
                .chain(first..first + 2000)
                .chain(last - 2000..last);
            for key in keys {
                let ratio = mapping.lower_bound(key + 1) / mapping.lower_bound(key);
                if ratio.is_finite() && mapping.lower_bound(key) >= f64::MIN_POSITIVE {
                    assert!(ratio <= gamma, "alpha {alpha}: bin {key} has ratio {ratio}");
                }
            }
        }
    }

    #[test]
    fn keys_are_monotonic() {
        let mapping = CubicMapping::new(0.01);
        let mut values = magnitudes();
        values.sort_by(f64::total_cmp);
        for pair in values.windows(2) {
            assert!(mapping.key(pair[0]) <= mapping.key(pair[1]), "{pair:?}");
        }
        let mut x = 1.0f64;
        let mut previous = mapping.key(x);
        for _ in 0..100_000 {
            x = f64::from_bits(x.to_bits() + 1_000_000_000);
            let key = mapping.key(x);
            assert!(key >= previous);
            previous = key;
        }
    }

    #[test]
    fn powers_of_two_start_bins_exactly() {
        // log2 is exact at powers of two, so 2^e lands where m * e says.
        let mapping = CubicMapping::new(0.01);
        for exponent in -1074..=1023 {
            let x = scale_by_power_of_two(1.0, exponent);
            let expected = (exponent as f64 * mapping.multiplier).floor() as i64;
            assert_eq!(mapping.key(x), expected, "2^{exponent}");
        }
    }

    #[test]
    fn sign_is_ignored() {
        let mapping = CubicMapping::new(0.01);
        for x in [1e-300, 3.5, 1e300] {
            assert_eq!(mapping.key(x), mapping.key(-x));
        }
    }

    #[test]
    fn inverse_cubic_inverts_the_cubic() {
        for step in 0..=1000 {
            let s = step as f64 / 1000.0;
            let y = ((A * s + B) * s + C) * s;
            assert!((inverse_cubic(y.min(1.0)) - s).abs() < 1e-14, "s {s}");
        }
    }

    #[test]
    fn floor_small_matches_floor() {
        for x in [
            -3.0,
            -2.5,
            -0.1,
            -0.0,
            0.0,
            0.1,
            2.5,
            3.0,
            -1e14 - 0.5,
            1e14 + 0.5,
            4e11 + 0.75,
        ] {
            assert_eq!(floor_small(x), x.floor(), "{x}");
        }
        let mut x = -1000.0;
        while x < 1000.0 {
            assert_eq!(floor_small(x), x.floor(), "{x}");
            x += 0.123;
        }
    }

    #[test]
    fn scale_by_power_of_two_covers_the_range() {
        assert_eq!(scale_by_power_of_two(1.0, -1074), f64::from_bits(1));
        assert_eq!(scale_by_power_of_two(1.5, 1023), 1.5 * 2f64.powi(1023));
        assert_eq!(scale_by_power_of_two(1.0, 1024), f64::INFINITY);
        assert_eq!(scale_by_power_of_two(3.0, -1), 1.5);
        assert_eq!(scale_by_power_of_two(1.0, -1100), 0.0);
    }
}
