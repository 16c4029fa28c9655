//! Behaviour of the whole sketch: the exact/sketch switch, accuracy, merges, the bytes
//! format. The mapping and the store have their own tests beside them.

use super::*;

/// numpy.quantile's definition of each method over sorted values: the reference.
fn reference(sorted: &[f64], q: f64, method: Method) -> f64 {
    let last = (sorted.len() - 1) as f64;
    let v = last * q;
    match method {
        Method::Lower => sorted[v.floor() as usize],
        Method::Higher => sorted[v.ceil() as usize],
        Method::Linear => {
            if v >= last {
                return sorted[sorted.len() - 1];
            }
            let i = v.floor();
            let (a, b, t) = (sorted[i as usize], sorted[i as usize + 1], v - i);
            let d = b - a;
            if t >= 0.5 {
                b - d * (1.0 - t)
            } else {
                a + d * t
            }
        }
    }
}

/// A reproducible mix: lognormal-ish magnitudes over many decades, both signs, zeros, ties.
fn mixed_values(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let uniform = (state >> 11) as f64 / (1u64 << 53) as f64;
            match i % 10 {
                0 => 0.0,
                1 => 42.0,
                2 | 3 => -(10f64.powf(uniform * 18.0 - 9.0)),
                _ => 10f64.powf(uniform * 18.0 - 9.0),
            }
        })
        .collect()
}

const METHODS: [Method; 3] = [Method::Lower, Method::Higher, Method::Linear];

fn qs() -> impl Iterator<Item = f64> {
    (0..=200)
        .map(|i| i as f64 / 200.0)
        .chain([0.999, 0.9999, 1e-9])
}

fn assert_within(sketch: &QuantileSketch, values: &[f64]) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let alpha = sketch.relative_accuracy();
    for q in qs() {
        for method in METHODS {
            let expected = reference(&sorted, q, method);
            let got = sketch.quantile(q, method).expect("valid q");
            let bound = match method {
                Method::Linear => {
                    let v = (sorted.len() - 1) as f64 * q;
                    let i = (v.floor() as usize).min(sorted.len() - 1);
                    let j = (i + 1).min(sorted.len() - 1);
                    alpha * sorted[i].abs().max(sorted[j].abs())
                }
                _ => alpha * expected.abs(),
            };
            assert!(
                (got - expected).abs() <= bound * (1.0 + 1e-12),
                "q {q} {method:?}: got {got:e}, numpy says {expected:e}"
            );
        }
    }
}

#[test]
fn settings_are_validated_and_named() {
    for (alpha, arg) in [
        (0.0, "relative_accuracy"),
        (1.0, "relative_accuracy"),
        (f64::NAN, "relative_accuracy"),
        (-0.5, "relative_accuracy"),
    ] {
        let err = QuantileSketch::new(alpha, 10, 10).expect_err("bad accuracy");
        assert!(err.to_string().starts_with(arg), "{err}");
    }
    let err = QuantileSketch::new(0.01, 0, 10).expect_err("bad max_bins");
    assert!(err.to_string().starts_with("max_bins"), "{err}");
    let err = QuantileSketch::new(0.01, MAX_MAX_BINS + 1, 10).expect_err("bad max_bins");
    assert!(
        err.to_string().contains(&(MAX_MAX_BINS + 1).to_string()),
        "{err}"
    );
    let err = QuantileSketch::new(0.01, 10, MAX_EXACT_LIMIT + 1).expect_err("bad limit");
    assert!(err.to_string().starts_with("exact_limit"), "{err}");
    assert!(QuantileSketch::new(0.01, 1, 0).is_ok());
}

#[test]
fn method_parse_names_the_argument() {
    assert_eq!(Method::parse("linear"), Ok(Method::Linear));
    let err = Method::parse("nearest").expect_err("unknown method");
    assert_eq!(
        err,
        Error::Value("method must be 'lower', 'higher' or 'linear', got 'nearest'".into())
    );
}

#[test]
fn empty_sketch_answers_nan() {
    let sketch = QuantileSketch::default();
    assert!(sketch
        .quantile(0.5, Method::Linear)
        .expect("valid")
        .is_nan());
    assert!(sketch.min().is_nan() && sketch.max().is_nan());
    assert!(sketch.value_at_rank(0).is_nan());
    assert_eq!(sketch.count(), 0);
    assert_eq!(sketch.sum(), 0.0);
}

#[test]
fn bad_q_is_rejected() {
    let mut sketch = QuantileSketch::default();
    sketch.add(1.0).expect("finite");
    for q in [-0.1, 1.1, f64::NAN, f64::INFINITY] {
        let err = sketch.quantile(q, Method::Lower).expect_err("bad q");
        assert!(err.to_string().starts_with("q must be in [0, 1]"), "{err}");
    }
    assert!(sketch.quantiles(&[0.5, 2.0], Method::Lower).is_err());
}

#[test]
fn exact_mode_matches_numpy_definitions_bit_for_bit() {
    let values = mixed_values(1000, 7);
    let mut sketch = QuantileSketch::new(0.01, 2048, 1000).expect("valid");
    sketch.add_many(&values).expect("finite");
    assert!(sketch.is_exact());
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    for q in qs() {
        for method in METHODS {
            let got = sketch.quantile(q, method).expect("valid");
            assert_eq!(
                got.to_bits(),
                reference(&sorted, q, method).to_bits(),
                "q {q}"
            );
        }
    }
    for (rank, &x) in sorted.iter().enumerate() {
        assert_eq!(sketch.value_at_rank(rank as u64), x);
    }
    assert_eq!(sketch.value_at_rank(u64::MAX), sorted[sorted.len() - 1]);
}

#[test]
fn switches_to_bins_past_the_exact_limit() {
    let mut sketch = QuantileSketch::new(0.01, 2048, 10).expect("valid");
    for i in 1..=10 {
        sketch.add(i as f64).expect("finite");
    }
    assert!(sketch.is_exact());
    assert_eq!(sketch.bin_count(), 0);
    sketch.add(11.0).expect("finite");
    assert!(!sketch.is_exact());
    assert!(sketch.bin_count() > 0);
    assert_eq!(sketch.count(), 11);
    assert_eq!(sketch.sum(), 66.0);
    assert_eq!((sketch.min(), sketch.max()), (1.0, 11.0));
    assert_within(&sketch, &(1..=11).map(f64::from).collect::<Vec<_>>());
}

#[test]
fn sketch_mode_is_within_relative_accuracy() {
    for alpha in [1e-4, 0.01, 0.05, 0.3] {
        let values = mixed_values(20_000, 3);
        let mut sketch = QuantileSketch::new(alpha, MAX_MAX_BINS, 100).expect("valid");
        sketch.add_many(&values).expect("finite");
        assert!(!sketch.is_exact());
        assert_within(&sketch, &values);
    }
}

#[test]
fn add_and_add_many_agree() {
    let values = mixed_values(5000, 11);
    let mut one_by_one = QuantileSketch::new(0.02, 4096, 64).expect("valid");
    for &x in &values {
        one_by_one.add(x).expect("finite");
    }
    let mut batched = QuantileSketch::new(0.02, 4096, 64).expect("valid");
    for chunk in values.chunks(777) {
        batched.add_many(chunk).expect("finite");
    }
    for q in qs() {
        for method in METHODS {
            assert_eq!(
                one_by_one.quantile(q, method).expect("valid"),
                batched.quantile(q, method).expect("valid")
            );
        }
    }
    assert_eq!(one_by_one.count(), batched.count());
}

type Bins = Vec<(i64, u64)>;

/// Every bin of both stores and the zeros: what `add` and `add_many` must agree on.
fn all_bins(sketch: &QuantileSketch) -> (Bins, Bins, u64) {
    (
        sketch.positive.bins().collect(),
        sketch.negative.bins().collect(),
        sketch.zeros,
    )
}

fn positive_values(n: usize, seed: u64) -> Vec<f64> {
    mixed_values(n, seed)
        .iter()
        .map(|x| x.abs() + 1e-12)
        .collect()
}

#[test]
fn fused_and_general_paths_give_the_bins_of_add() {
    // Positive batches over several blocks (the fused path), with room for every bin (its
    // sub-counted and plain loops) and with collapsing (its clamped loop), a batch that turns to the general path in its third
    // block, and an accuracy too fine for i32 keys (general path throughout).
    let mut mixed_late = positive_values(3 * BLOCK + 100, 21);
    mixed_late[2 * BLOCK + 5] = -3.0;
    mixed_late[2 * BLOCK + 6] = 0.0;
    mixed_late[3 * BLOCK + 7] = 1e-310;
    // Concentrated values (a few bins, the sub-counted loop at its busiest) too.
    let narrow: Vec<f64> = positive_values(2 * BLOCK + 3, 22)
        .iter()
        .map(|x| 1.0 + (x.ln().abs() % 1.0) * 0.02)
        .collect();
    let cases: [(f64, usize, usize, Vec<f64>); 8] = [
        (0.01, 4096, 100, positive_values(2 * BLOCK + 333, 17)),
        (0.01, 2048, 0, narrow),
        (0.05, 2048, 0, vec![3.25; BLOCK + 9]),
        (0.01, 64, 100, positive_values(2 * BLOCK + 333, 18)),
        (0.001, 1 << 16, 0, positive_values(BLOCK + 1, 19)),
        (0.001, 2048, 0, positive_values(BLOCK + 1, 19)),
        (0.01, 256, 1024, mixed_late),
        (1e-9, 4096, 10, positive_values(BLOCK + 10, 20)),
    ];
    for (alpha, max_bins, exact_limit, values) in cases {
        let mut one_by_one = QuantileSketch::new(alpha, max_bins, exact_limit).expect("valid");
        for &x in &values {
            one_by_one.add(x).expect("finite");
        }
        let mut batched = QuantileSketch::new(alpha, max_bins, exact_limit).expect("valid");
        batched.add_many(&values).expect("finite");
        assert_eq!(all_bins(&one_by_one), all_bins(&batched), "alpha {alpha}");
        assert_eq!(one_by_one.count(), batched.count());
        assert_eq!(one_by_one.min(), batched.min());
        assert_eq!(one_by_one.max(), batched.max());
        let relative = (one_by_one.sum() - batched.sum()).abs() / one_by_one.sum().abs();
        assert!(
            relative <= 1e-12,
            "alpha {alpha}: sums differ by {relative:e}"
        );
        // And a second batch into a sketch that already holds bins.
        for &x in &values[..5000] {
            one_by_one.add(x).expect("finite");
        }
        batched.add_many(&values[..5000]).expect("finite");
        assert_eq!(
            all_bins(&one_by_one),
            all_bins(&batched),
            "alpha {alpha}, again"
        );
    }
}

#[test]
fn a_bad_value_in_a_positive_batch_leaves_the_sketch_unchanged() {
    for bad in [f64::NAN, f64::INFINITY, -f64::NAN] {
        let mut sketch = QuantileSketch::new(0.01, 2048, 1024).expect("valid");
        sketch.add_many(&positive_values(5000, 3)).expect("finite");
        let before = sketch.to_bytes();
        let mut batch = positive_values(3 * BLOCK, 4);
        batch[2 * BLOCK + 17] = bad;
        let err = sketch.add_many(&batch).expect_err("non-finite");
        assert_eq!(
            err.to_string(),
            format!(
                "values must all be finite, got {} at index {}",
                show(bad),
                2 * BLOCK + 17
            )
        );
        assert_eq!(sketch.to_bytes(), before);
    }
}

#[test]
fn extremes_are_exact_in_sketch_mode() {
    let values = mixed_values(10_000, 5);
    let mut sketch = QuantileSketch::new(0.05, 2048, 0).expect("valid");
    sketch.add_many(&values).expect("finite");
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for method in METHODS {
        assert_eq!(sketch.quantile(0.0, method).expect("valid"), min);
        assert_eq!(sketch.quantile(1.0, method).expect("valid"), max);
    }
}

#[test]
fn non_finite_values_leave_the_sketch_unchanged() {
    let mut sketch = QuantileSketch::new(0.01, 2048, 4).expect("valid");
    sketch.add_many(&[1.0, 2.0, 3.0]).expect("finite");
    let before = sketch.to_bytes();
    let err = sketch
        .add_many(&[5.0, 6.0, f64::NAN, 7.0])
        .expect_err("nan");
    assert_eq!(
        err.to_string(),
        "values must all be finite, got nan at index 2"
    );
    assert!(sketch.add(f64::INFINITY).is_err());
    assert!(sketch.add_many(&[f64::NEG_INFINITY]).is_err());
    assert_eq!(sketch.to_bytes(), before);
    sketch.add_many(&mixed_values(100, 1)).expect("finite");
    let before = sketch.to_bytes();
    assert!(sketch.add_many(&[1.0, f64::INFINITY]).is_err());
    assert_eq!(sketch.to_bytes(), before);
}

#[test]
fn subnormals_and_extremes_are_counted() {
    let values = [
        f64::from_bits(1),
        -f64::from_bits(3),
        f64::MIN_POSITIVE,
        f64::MAX,
        -f64::MAX,
        0.0,
        -0.0,
        1.0,
    ];
    // Enough bins for the whole f64 range: nothing collapses.
    let mut sketch = QuantileSketch::new(0.01, MAX_MAX_BINS, 0).expect("valid");
    sketch.add_many(&values).expect("finite");
    assert_eq!(sketch.count(), values.len() as u64);
    assert_within(&sketch, &values);
}

#[test]
fn respects_max_bins_collapsing_the_lowest_values() {
    let values: Vec<f64> = (0..100_000)
        .map(|i| 1e-6 * 1.001f64.powi(i % 20_000))
        .collect();
    let mut sketch = QuantileSketch::new(0.001, 64, 0).expect("valid");
    sketch.add_many(&values).expect("finite");
    assert!(sketch.bin_count() <= 64);
    // The top of the distribution keeps its accuracy.
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    for q in [0.999, 0.9999, 1.0] {
        let expected = reference(&sorted, q, Method::Lower);
        let got = sketch.quantile(q, Method::Lower).expect("valid");
        assert!((got - expected).abs() <= 0.001 * expected, "q {q}");
    }
    // The bottom was collapsed: its answer is too high, never lost.
    let low = sketch.quantile(0.01, Method::Lower).expect("valid");
    assert!(low > reference(&sorted, 0.01, Method::Lower) * 1.001);
    assert_eq!(sketch.count(), 100_000);
}

#[test]
fn the_negative_store_gives_way_first() {
    let mut sketch = QuantileSketch::new(0.01, 110, 0).expect("valid");
    let values: Vec<f64> = (1..=40)
        .map(|i| 1.05f64.powi(i))
        .chain((1..=40).map(|i| -(1.05f64.powi(i))))
        .collect();
    sketch.add_many(&values).expect("finite");
    let mapping = CubicMapping::new(0.01);
    let positive_width = (mapping.key(1.05f64.powi(40)) - mapping.key(1.05) + 1) as usize;
    assert!(positive_width < 110);
    assert_eq!(sketch.positive.width(), positive_width);
    assert_eq!(sketch.bin_count(), 110);
    // Positive values kept their own bins.
    let mut positives: Vec<f64> = values.iter().copied().filter(|x| *x > 0.0).collect();
    positives.sort_by(f64::total_cmp);
    for (i, x) in positives.iter().enumerate() {
        let got = sketch.value_at_rank(40 + i as u64);
        assert!((got - x).abs() <= 0.01 * x, "{got} vs {x}");
    }
    // max_bins = 1 with both signs keeps one bin per sign, nothing is dropped.
    let mut tiny = QuantileSketch::new(0.01, 1, 0).expect("valid");
    tiny.add_many(&values).expect("finite");
    assert_eq!(tiny.bin_count(), 2);
    assert_eq!(tiny.count(), 80);
}

#[test]
fn merge_equals_one_sketch_of_the_union() {
    let values = mixed_values(6000, 9);
    let (left, right) = values.split_at(2500);
    for exact_limit in [0, 100, 3000, 10_000] {
        let mut whole = QuantileSketch::new(0.01, 8192, exact_limit).expect("valid");
        whole.add_many(&values).expect("finite");
        let mut a = QuantileSketch::new(0.01, 8192, exact_limit).expect("valid");
        a.add_many(left).expect("finite");
        let mut b = QuantileSketch::new(0.01, 8192, exact_limit).expect("valid");
        b.add_many(right).expect("finite");
        a.merge(&b).expect("same settings");
        assert_eq!(a.count(), whole.count());
        assert_eq!(a.is_exact(), whole.is_exact());
        assert_eq!((a.min(), a.max()), (whole.min(), whole.max()));
        for q in qs() {
            for method in METHODS {
                assert_eq!(
                    a.quantile(q, method).expect("valid"),
                    whole.quantile(q, method).expect("valid"),
                    "exact_limit {exact_limit}, q {q}"
                );
            }
        }
        assert_within(&a, &values);
    }
}

#[test]
fn merge_with_itself_doubles() {
    let mut sketch = QuantileSketch::new(0.01, 2048, 16).expect("valid");
    sketch
        .add_many(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
        .expect("finite");
    let copy = sketch.clone();
    sketch.merge(&copy).expect("same settings");
    assert_eq!(sketch.count(), 20);
    assert_eq!(sketch.sum(), 110.0);
    let copy = sketch.clone();
    sketch.merge(&copy).expect("same settings");
    assert_eq!(sketch.count(), 40);
    assert!(!sketch.is_exact());
    assert_eq!(
        sketch.quantile(0.5, Method::Lower).expect("valid"),
        sketch.value_at_rank(19)
    );
}

#[test]
fn merge_of_other_settings_is_rejected_and_changes_nothing() {
    let mut sketch = QuantileSketch::default();
    sketch.add_many(&[1.0, 2.0]).expect("finite");
    let before = sketch.to_bytes();
    for other in [
        QuantileSketch::new(0.02, 2048, 1024),
        QuantileSketch::new(0.01, 2047, 1024),
        QuantileSketch::new(0.01, 2048, 1023),
    ] {
        let mut other = other.expect("valid");
        other.add(3.0).expect("finite");
        let err = sketch.merge(&other).expect_err("other settings");
        assert!(
            err.to_string()
                .starts_with("other was built with other settings"),
            "{err}"
        );
    }
    assert_eq!(sketch.to_bytes(), before);
}

#[test]
fn merge_keeps_max_bins_and_the_upper_tail() {
    let mut a = QuantileSketch::new(0.01, 100, 0).expect("valid");
    a.add_many(&(1..1000).map(|i| i as f64).collect::<Vec<_>>())
        .expect("finite");
    let mut b = QuantileSketch::new(0.01, 100, 0).expect("valid");
    b.add_many(&(1..1000).map(|i| -(i as f64) * 1e6).collect::<Vec<_>>())
        .expect("finite");
    a.merge(&b).expect("same settings");
    assert!(a.bin_count() <= 100);
    assert_eq!(a.count(), 1998);
    let p99 = a.quantile(0.99, Method::Lower).expect("valid");
    let expected = 980.0;
    assert!((p99 - expected).abs() <= 0.01 * expected, "{p99}");
}

#[test]
fn bytes_round_trip_in_both_modes() {
    for (n, exact_limit) in [(0, 10), (5, 10), (10, 10), (5000, 10), (5000, 0)] {
        let mut sketch = QuantileSketch::new(0.015, 500, exact_limit).expect("valid");
        sketch.add_many(&mixed_values(n, 4)).expect("finite");
        let bytes = sketch.to_bytes();
        let back = QuantileSketch::from_bytes(&bytes).expect("valid encoding");
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.count(), sketch.count());
        assert_eq!(back.sum().to_bits(), sketch.sum().to_bits());
        assert_eq!(back.relative_accuracy(), 0.015);
        assert_eq!((back.max_bins(), back.exact_limit()), (500, exact_limit));
        for q in qs() {
            for method in METHODS {
                let (a, b) = (
                    back.quantile(q, method).expect("valid"),
                    sketch.quantile(q, method).expect("valid"),
                );
                assert!(a == b || a.is_nan() && b.is_nan());
            }
        }
        // A decoded sketch keeps working.
        let mut back = back;
        back.add_many(&[1.0, -1.0, 0.0]).expect("finite");
        sketch.add_many(&[1.0, -1.0, 0.0]).expect("finite");
        assert_eq!(back.to_bytes(), sketch.to_bytes());
    }
}

#[test]
fn bins_are_compact() {
    let mut sketch = QuantileSketch::default();
    sketch
        .add_many(&mixed_values(1_000_000, 2))
        .expect("finite");
    assert!(
        sketch.to_bytes().len() < 8 * 1024,
        "{}",
        sketch.to_bytes().len()
    );
    assert!(
        sketch.memory_bytes() < 64 * 1024,
        "{}",
        sketch.memory_bytes()
    );
}

#[test]
fn garbage_bytes_are_rejected_without_panicking() {
    let mut sketch = QuantileSketch::new(0.01, 300, 8).expect("valid");
    sketch.add_many(&mixed_values(3000, 6)).expect("finite");
    let good = sketch.to_bytes();
    let mut exact = QuantileSketch::new(0.01, 300, 8).expect("valid");
    exact.add_many(&[3.0, 1.0, 2.0]).expect("finite");
    let good_exact = exact.to_bytes();
    for encoding in [&good, &good_exact] {
        // Every truncation.
        for len in 0..encoding.len() {
            let err = QuantileSketch::from_bytes(&encoding[..len]).expect_err("truncated");
            assert!(err.to_string().starts_with("data is not a valid"), "{err}");
        }
        // Trailing bytes.
        let mut longer = encoding.clone();
        longer.push(0);
        assert!(QuantileSketch::from_bytes(&longer).is_err());
        // Every single-byte corruption: an error or a sketch that still answers.
        for at in 0..encoding.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = encoding.clone();
                bad[at] ^= flip;
                if let Ok(decoded) = QuantileSketch::from_bytes(&bad) {
                    for q in [0.0, 0.3, 0.5, 0.99, 1.0] {
                        decoded.quantile(q, Method::Linear).expect("valid q");
                    }
                }
            }
        }
    }
    // Random garbage and a wrong version.
    let mut state = 77u64;
    for len in 0..300 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        assert!(QuantileSketch::from_bytes(&bytes).is_err());
    }
    let mut wrong_version = good.clone();
    wrong_version[4] = 9;
    let err = QuantileSketch::from_bytes(&wrong_version).expect_err("version");
    assert!(err.to_string().contains("unsupported version 9"), "{err}");
}

#[test]
fn huge_counts_do_not_overflow() {
    let mut sketch = QuantileSketch::new(0.01, 2048, 0).expect("valid");
    sketch.add(1.0).expect("finite");
    for _ in 0..63 {
        let copy = sketch.clone();
        sketch.merge(&copy).expect("fits");
    }
    assert_eq!(sketch.count(), 1 << 63);
    let copy = sketch.clone();
    let before = sketch.to_bytes();
    assert!(sketch.merge(&copy).is_err());
    assert_eq!(sketch.to_bytes(), before);
    assert_eq!(sketch.quantile(0.5, Method::Linear).expect("valid"), 1.0);
    let back = QuantileSketch::from_bytes(&before).expect("valid");
    assert_eq!(back.count(), 1 << 63);
}

#[test]
fn a_bad_value_deep_in_a_large_batch_leaves_the_sketch_unchanged() {
    for already in [10, 5000] {
        let mut sketch = QuantileSketch::new(0.01, 2048, 1024).expect("valid");
        sketch.add_many(&mixed_values(already, 3)).expect("finite");
        let before = sketch.to_bytes();
        let mut batch = mixed_values(200_000, 4);
        batch[150_001] = f64::NAN;
        let err = sketch.add_many(&batch).expect_err("nan");
        assert_eq!(
            err.to_string(),
            "values must all be finite, got nan at index 150001"
        );
        assert_eq!(sketch.to_bytes(), before);
        assert_eq!(sketch.is_exact(), already <= 1024);
    }
}
