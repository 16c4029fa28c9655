//! Streaming quantiles: every value is kept (exact answers, numpy's definitions) until
//! `exact_limit` values were seen; past that the sketch is a DDSketch (Masson, Rim & Lee,
//! "DDSketch: a fast and fully-mergeable quantile sketch with relative-error guarantees",
//! VLDB 2019): values are counted in logarithmically sized bins, so every answer is within
//! `relative_accuracy` of the exact one, merges are exact, and memory is capped by
//! collapsing the lowest bins.
//!
//! - `mapping`: value ↔ bin key (DataDog's cubically interpolated mapping).
//! - `store`: dense bins that collapse their lowest keys first.
//! - `batch`: the vectorised kernels of `add_many`.
//! - `codec`: the versioned bytes format.

mod batch;
mod codec;
mod mapping;
mod store;

use crate::error::{Error, Result};
use batch::{summarize, BatchSummary, SlotPlan, SLOT_ZERO};
use mapping::{CubicMapping, MIN_RELATIVE_ACCURACY};
use store::{plan_limits, Store};

pub const DEFAULT_RELATIVE_ACCURACY: f64 = 0.01;
pub const DEFAULT_MAX_BINS: usize = 2048;
pub const DEFAULT_EXACT_LIMIT: usize = 1024;
/// Upper bounds of the settings: 8 MiB of bins per sign, 128 MiB of exact values.
pub const MAX_MAX_BINS: usize = 1 << 20;
pub const MAX_EXACT_LIMIT: usize = 1 << 24;

/// Values per round of the batch path: slots of one chunk are computed (vectorised), then
/// counted.
const CHUNK: usize = 1024;
/// Values per block of a large batch: checked, then binned while still in cache.
const BLOCK: usize = 32 * 1024;
/// Sub-counts per bin when a block of positive values is counted, and the most bins a block
/// may span to be counted so (its sub-counts then take at most 128 KiB).
const SPLIT: usize = 8;
const SPLIT_WIDTH: usize = 4096;

/// How a quantile between two ranks is answered, with numpy's meanings (numpy.quantile's
/// `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The value at rank floor((n - 1) q).
    Lower,
    /// The value at rank ceil((n - 1) q).
    Higher,
    /// Linear interpolation between those two.
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
                format!("must be 'lower', 'higher' or 'linear', got '{other}'"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Lower => "lower",
            Method::Higher => "higher",
            Method::Linear => "linear",
        }
    }
}

#[derive(Debug, Clone)]
pub struct QuantileSketch {
    relative_accuracy: f64,
    max_bins: usize,
    exact_limit: usize,
    mapping: CubicMapping,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// Every value, sorted by `f64::total_cmp`, while `count <= exact_limit`; empty after.
    exact: Vec<f64>,
    /// Past the exact limit: the zeros, and the positive and negative values by bin (the
    /// negative store under the negated key, so both stores order keys like values).
    zeros: u64,
    positive: Store,
    negative: Store,
}

impl Default for QuantileSketch {
    fn default() -> Self {
        QuantileSketch::with_valid_settings(
            DEFAULT_RELATIVE_ACCURACY,
            DEFAULT_MAX_BINS,
            DEFAULT_EXACT_LIMIT,
        )
    }
}

impl QuantileSketch {
    pub fn new(relative_accuracy: f64, max_bins: usize, exact_limit: usize) -> Result<Self> {
        if !(MIN_RELATIVE_ACCURACY..1.0).contains(&relative_accuracy) {
            return Err(Error::value(
                "relative_accuracy",
                format!(
                    "must be in [{MIN_RELATIVE_ACCURACY:e}, 1), got {}",
                    show(relative_accuracy)
                ),
            ));
        }
        if !(1..=MAX_MAX_BINS).contains(&max_bins) {
            return Err(Error::value(
                "max_bins",
                format!("must be in [1, {MAX_MAX_BINS}], got {max_bins}"),
            ));
        }
        if exact_limit > MAX_EXACT_LIMIT {
            return Err(Error::value(
                "exact_limit",
                format!("must be in [0, {MAX_EXACT_LIMIT}], got {exact_limit}"),
            ));
        }
        Ok(Self::with_valid_settings(
            relative_accuracy,
            max_bins,
            exact_limit,
        ))
    }

    fn with_valid_settings(relative_accuracy: f64, max_bins: usize, exact_limit: usize) -> Self {
        QuantileSketch {
            relative_accuracy,
            max_bins,
            exact_limit,
            mapping: CubicMapping::new(relative_accuracy),
            count: 0,
            sum: 0.0,
            min: f64::NAN,
            max: f64::NAN,
            exact: Vec::new(),
            zeros: 0,
            positive: Store::default(),
            negative: Store::default(),
        }
    }

    pub fn relative_accuracy(&self) -> f64 {
        self.relative_accuracy
    }

    pub fn max_bins(&self) -> usize {
        self.max_bins
    }

    pub fn exact_limit(&self) -> usize {
        self.exact_limit
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The smallest value added; NaN when empty.
    pub fn min(&self) -> f64 {
        self.min
    }

    /// The largest value added; NaN when empty.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// True while every value is kept (`count <= exact_limit`).
    pub fn is_exact(&self) -> bool {
        self.count <= self.exact_limit as u64
    }

    /// The bytes this sketch holds, its own struct included.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + 8 * (self.exact.capacity()
                + self.positive.allocated_bins()
                + self.negative.allocated_bins())
    }

    /// The number of bins in use (0 in exact mode).
    pub fn bin_count(&self) -> usize {
        self.positive.width() + self.negative.width()
    }

    pub fn add(&mut self, x: f64) -> Result<()> {
        if !x.is_finite() {
            return Err(Error::value(
                "x",
                format!("must be finite, got {}", show(x)),
            ));
        }
        let count = self.checked_count(1)?;
        if count <= self.exact_limit as u64 {
            let at = self.exact.partition_point(|v| v.total_cmp(&x).is_le());
            self.exact.insert(at, x);
        } else {
            self.spill_exact();
            self.bin_one(x);
        }
        self.count = count;
        self.sum += x;
        self.min = if self.min <= x { self.min } else { x };
        self.max = if self.max >= x { self.max } else { x };
        Ok(())
    }

    /// Adds every value of `values`, or none of them if one is not finite.
    pub fn add_many(&mut self, values: &[f64]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let count = self.checked_count(values.len() as u64)?;
        if count <= self.exact_limit as u64 {
            let batch = summarize(values)?;
            self.exact.extend_from_slice(values);
            // A stable sort finds the sorted prefix and merges the new run into it.
            self.exact.sort_by(f64::total_cmp);
            self.absorb(count, &batch);
            return Ok(());
        }
        // Block by block, so that each value is read from memory once, checked, and met again
        // in cache to be binned. A bad value in a later block puts back the state of before
        // (a copy of the sketch costs far less than a second pass over a large batch).
        let backup = (values.len() > BLOCK).then(|| self.clone());
        let mut added = self.count;
        // Blocks of positive normal values (the usual durations and sizes) take the fused
        // path: one vectorised pass validates, sums and computes every key, then a tight loop
        // counts them. The first block that is not such falls back to the general path, and
        // so do the blocks after it (mixed data would pay for both).
        let mut fused = batch::keys_fit_i32(self.mapping.multiplier());
        let mut keys = if fused {
            vec![0i32; values.len().min(BLOCK)]
        } else {
            Vec::new()
        };
        for block in values.chunks(BLOCK) {
            if fused {
                let keys = &mut keys[..block.len()];
                let (batch, outside) = batch::positive_keys(block, self.mapping.multiplier(), keys);
                if !outside {
                    self.spill_exact();
                    self.count_positive_keys(block, keys, &batch);
                    added += block.len() as u64;
                    self.absorb(added, &batch);
                    continue;
                }
                fused = false;
            }
            let batch = match summarize(block) {
                Ok(batch) => batch,
                Err(_) => {
                    if let Some(backup) = backup {
                        *self = backup;
                    }
                    // Name the first bad value by its index in the whole batch.
                    return Err(summarize(values)
                        .err()
                        .unwrap_or_else(|| Error::value("values", "must all be finite")));
                }
            };
            self.spill_exact();
            self.bin_values(block, &batch);
            added += block.len() as u64;
            self.absorb(added, &batch);
        }
        Ok(())
    }

    fn checked_count(&self, added: u64) -> Result<u64> {
        self.count.checked_add(added).ok_or_else(|| {
            Error::value(
                "values",
                format!("would overflow the count ({} + {added})", self.count),
            )
        })
    }

    fn absorb(&mut self, count: u64, batch: &BatchSummary) {
        self.count = count;
        self.sum += batch.sum;
        // NaN (empty) never wins a comparison, so the batch's extreme replaces it.
        self.min = if self.min <= batch.min {
            self.min
        } else {
            batch.min
        };
        self.max = if self.max >= batch.max {
            self.max
        } else {
            batch.max
        };
    }

    /// Moves the exact values into bins (once, when the count passes the exact limit).
    fn spill_exact(&mut self) {
        if self.exact.is_empty() {
            return;
        }
        let values = std::mem::take(&mut self.exact);
        // The exact values were checked when they were added, so this cannot fail.
        if let Ok(batch) = summarize(&values) {
            self.bin_values(&values, &batch);
        }
    }

    /// Collapses whatever must go so that the key ranges `positive` and `negative` (store
    /// keys) fit next to the bins in use; returns each store's floor.
    fn make_room(
        &mut self,
        positive: Option<(i64, i64)>,
        negative: Option<(i64, i64)>,
    ) -> (i64, i64) {
        let positive = union(self.positive.range(), positive);
        let negative = union(self.negative.range(), negative);
        let (positive_limit, negative_limit) =
            plan_limits(width(positive), width(negative), self.max_bins);
        let positive_floor = match positive {
            Some((lo, hi)) => self.positive.prepare(lo, hi, positive_limit),
            None => i64::MIN,
        };
        let negative_floor = match negative {
            Some((lo, hi)) => self.negative.prepare(lo, hi, negative_limit),
            None => i64::MIN,
        };
        (positive_floor, negative_floor)
    }

    /// Counts one finite value in the bins.
    fn bin_one(&mut self, x: f64) {
        if x == 0.0 {
            self.zeros += 1;
            return;
        }
        let key = self.mapping.key(x);
        let (positive_floor, negative_floor) = if x > 0.0 {
            self.make_room(Some((key, key)), None)
        } else {
            self.make_room(None, Some((-key, -key)))
        };
        let (store, key) = if x > 0.0 {
            (&mut self.positive, key.max(positive_floor))
        } else {
            (&mut self.negative, (-key).max(negative_floor))
        };
        match store.slot(key) {
            Some(slot) => {
                *slot += 1;
                store.note_added(key, key, 1);
            }
            // `make_room` made the window cover the key; this keeps the count regardless.
            None => store.add(key, 1, self.max_bins),
        }
    }

    /// Counts finite values in the bins. The batch's extremes bound its keys (the mapping is
    /// monotonic), so the stores make room once; then, chunk by chunk, a vectorised pass
    /// computes every value's slot and a tight loop counts them.
    fn bin_values(&mut self, values: &[f64], batch: &BatchSummary) {
        let mapping = &self.mapping;
        let positive =
            (batch.max > 0.0).then(|| (mapping.key(batch.min_positive), mapping.key(batch.max)));
        let negative =
            (batch.min < 0.0).then(|| (-mapping.key(batch.min), -mapping.key(batch.max_negative)));
        let (positive_floor, negative_floor) = self.make_room(positive, negative);

        let multiplier = self.mapping.multiplier();
        let (positive_counts, positive_offset) = self.positive.window_mut();
        let (negative_counts, negative_offset) = self.negative.window_mut();
        let plan = SlotPlan {
            multiplier,
            positive_floor: positive_floor as f64,
            positive_offset: positive_offset as f64,
            positive_len: positive_counts.len(),
            negative_floor: negative_floor as f64,
            negative_offset: negative_offset as f64,
            negative_len: negative_counts.len(),
        };
        let positive_len = positive_counts.len();
        let zero_slot = SLOT_ZERO as u32 as usize;
        let (mut zeros, mut negatives) = (0u64, 0u64);
        let mut strays = Vec::new();
        let mut slot_buffer = [0i32; CHUNK];
        for chunk in values.chunks(CHUNK) {
            let slots = &mut slot_buffer[..chunk.len()];
            batch::slots(chunk, &plan, slots);
            for (&slot, &x) in slots.iter().zip(chunk) {
                // The negative markers become huge indices that miss both windows.
                let slot = slot as u32 as usize;
                if let Some(count) = positive_counts.get_mut(slot) {
                    *count += 1;
                } else if let Some(count) = negative_counts.get_mut(slot.wrapping_sub(positive_len))
                {
                    *count += 1;
                    negatives += 1;
                } else if slot == zero_slot {
                    zeros += 1;
                } else {
                    // A key outside the windows: impossible for a monotonic mapping, but
                    // counted the slow way rather than lost.
                    strays.push(x);
                }
            }
        }
        let positives = values.len() as u64 - negatives - zeros - strays.len() as u64;
        self.positive.note_batch(positives);
        self.negative.note_batch(negatives);
        self.zeros += zeros;
        for x in strays {
            self.bin_one(x);
        }
    }

    /// Counts a block of positive normal values whose keys `batch::positive_keys` computed.
    /// The block's extremes bound its keys (the mapping is monotonic), so the positive store
    /// makes room once; keys below its floor count at the floor, as in `bin_one`.
    fn count_positive_keys(&mut self, values: &[f64], keys: &[i32], batch: &BatchSummary) {
        let (lo, hi) = (self.mapping.key(batch.min), self.mapping.key(batch.max));
        let (floor, _) = self.make_room(Some((lo, hi)), None);
        let (counts, offset) = self.positive.window_mut();
        let window = counts.len();
        // Nothing collapses into this block's keys (the usual case): the slot is the key less
        // the offset, in u32 arithmetic (exact, the keys and offset being i32; a key below
        // the window wraps round to a huge slot and misses). Else keys below the floor count
        // at the floor.
        let unclamped = i32::try_from(offset).ok().filter(|_| floor <= lo);
        // Narrow blocks (the keys lo..=hi inside the window, at most SPLIT_WIDTH of them)
        // count in SPLIT sub-counts per bin, value i in sub-count i % SPLIT: a run of values
        // in one bin (frequent in concentrated data) no longer chains each increment to the
        // last through memory. The sub-counts are u32: a block is far below 2^32 values.
        let split = unclamped
            .and_then(|_| {
                let first = usize::try_from(lo.wrapping_sub(offset)).ok()?;
                let width = usize::try_from(hi.wrapping_sub(lo)).ok()?.checked_add(1)?;
                let base = i32::try_from(lo).ok()?;
                (width <= SPLIT_WIDTH && first.checked_add(width)? <= window)
                    .then_some((base, first, width))
            })
            .filter(|_| keys.len() < u32::MAX as usize);
        let is_stray = |key: i32| match (split, unclamped) {
            (Some((base, _, width)), _) => key.wrapping_sub(base) as u32 as usize >= width,
            (None, Some(offset)) => key.wrapping_sub(offset) as u32 as usize >= window,
            (None, None) => i64::from(key).max(floor).wrapping_sub(offset) as usize >= window,
        };
        let mut missed = 0u64;
        match (split, unclamped) {
            (Some((base, first, width)), _) => {
                let mut sub_counts = vec![[0u32; SPLIT]; width];
                let groups = keys.chunks_exact(SPLIT);
                let rest = groups.remainder();
                for group in groups {
                    for (j, &key) in group.iter().enumerate() {
                        match sub_counts.get_mut(key.wrapping_sub(base) as u32 as usize) {
                            Some(bin) => bin[j] += 1,
                            None => missed += 1,
                        }
                    }
                }
                for &key in rest {
                    match sub_counts.get_mut(key.wrapping_sub(base) as u32 as usize) {
                        Some(bin) => bin[0] += 1,
                        None => missed += 1,
                    }
                }
                for (count, bin) in counts.iter_mut().skip(first).zip(&sub_counts) {
                    *count += bin.iter().map(|&c| u64::from(c)).sum::<u64>();
                }
            }
            (None, Some(offset)) => {
                for &key in keys {
                    match counts.get_mut(key.wrapping_sub(offset) as u32 as usize) {
                        Some(count) => *count += 1,
                        None => missed += 1,
                    }
                }
            }
            (None, None) => {
                for &key in keys {
                    let slot = i64::from(key).max(floor).wrapping_sub(offset) as usize;
                    match counts.get_mut(slot) {
                        Some(count) => *count += 1,
                        None => missed += 1,
                    }
                }
            }
        }
        self.positive.note_batch(values.len() as u64 - missed);
        if missed > 0 {
            // Impossible for a monotonic mapping; counted the slow way rather than lost.
            let strays: Vec<f64> = keys
                .iter()
                .zip(values)
                .filter(|&(&key, _)| is_stray(key))
                .map(|(_, &x)| x)
                .collect();
            for x in strays {
                self.bin_one(x);
            }
        }
    }

    /// Adds the counts of another sketch's bins (same mapping) to ours.
    fn merge_bins(&mut self, other: &QuantileSketch) {
        let (positive_floor, negative_floor) =
            self.make_room(other.positive.range(), other.negative.range());
        for (store, other_store, floor) in [
            (&mut self.positive, &other.positive, positive_floor),
            (&mut self.negative, &other.negative, negative_floor),
        ] {
            let mut landed = 0;
            for (key, count) in other_store.bins() {
                let key = key.max(floor);
                match store.slot(key) {
                    Some(slot) => {
                        *slot += count;
                        landed += count;
                    }
                    None => store.add(key, count, self.max_bins),
                }
            }
            store.note_batch(landed);
        }
        self.zeros += other.zeros;
        // A fallback `add` above may have widened a store past the shared budget.
        self.make_room(None, None);
    }

    /// Adds `other`'s values to this sketch. Both must have been built with the same
    /// settings; an error leaves this sketch unchanged.
    pub fn merge(&mut self, other: &QuantileSketch) -> Result<()> {
        if self.relative_accuracy.to_bits() != other.relative_accuracy.to_bits()
            || self.max_bins != other.max_bins
            || self.exact_limit != other.exact_limit
        {
            return Err(Error::value(
                "other",
                format!(
                    "was built with other settings: relative_accuracy={}, max_bins={}, \
                     exact_limit={} (this sketch: {}, {}, {})",
                    other.relative_accuracy,
                    other.max_bins,
                    other.exact_limit,
                    self.relative_accuracy,
                    self.max_bins,
                    self.exact_limit
                ),
            ));
        }
        if other.count == 0 {
            return Ok(());
        }
        let count = self.count.checked_add(other.count).ok_or_else(|| {
            Error::value(
                "other",
                format!(
                    "would overflow the count ({} + {})",
                    self.count, other.count
                ),
            )
        })?;
        if count <= self.exact_limit as u64 {
            self.exact.extend_from_slice(&other.exact);
            self.exact.sort_by(f64::total_cmp);
        } else {
            self.spill_exact();
            if other.is_exact() {
                if let Ok(batch) = summarize(&other.exact) {
                    self.bin_values(&other.exact, &batch);
                }
            } else {
                self.merge_bins(other);
            }
        }
        let summary = BatchSummary {
            sum: other.sum,
            min: other.min,
            max: other.max,
            min_positive: f64::INFINITY,
            max_negative: f64::NEG_INFINITY,
        };
        self.absorb(count, &summary);
        Ok(())
    }

    /// The q-quantile by `method`, numpy's definitions: exact while every value is kept,
    /// within `relative_accuracy` after. NaN when empty.
    pub fn quantile(&self, q: f64, method: Method) -> Result<f64> {
        check_q(q)?;
        Ok(self
            .quantiles_unchecked(&[q], method)
            .first()
            .copied()
            .unwrap_or(f64::NAN))
    }

    /// `quantile` of each q; all are checked before any is answered. The ranks they need
    /// are found in one walk over the bins.
    pub fn quantiles(&self, qs: &[f64], method: Method) -> Result<Vec<f64>> {
        for &q in qs {
            check_q(q)?;
        }
        Ok(self.quantiles_unchecked(qs, method))
    }

    fn quantiles_unchecked(&self, qs: &[f64], method: Method) -> Vec<f64> {
        if self.count == 0 {
            return vec![f64::NAN; qs.len()];
        }
        // numpy.quantile: the virtual index (n - 1) q, in floating point as numpy does it.
        let last = (self.count - 1) as f64;
        let needs: Vec<RankNeed> = qs
            .iter()
            .map(|&q| {
                let virtual_index = last * q;
                match method {
                    Method::Lower => RankNeed::one(virtual_index.floor() as u64),
                    Method::Higher => RankNeed::one(virtual_index.ceil() as u64),
                    Method::Linear if virtual_index >= last => RankNeed::one(self.count - 1),
                    Method::Linear => {
                        let below = virtual_index.floor();
                        RankNeed {
                            rank: below as u64,
                            t: Some(virtual_index - below),
                        }
                    }
                }
            })
            .collect();
        let mut ranks: Vec<u64> = needs
            .iter()
            .flat_map(|need| [need.rank, need.rank.saturating_add(need.t.is_some() as u64)])
            .collect();
        ranks.sort_unstable();
        ranks.dedup();
        let values = self.values_at_sorted_ranks(&ranks);
        let value_of = |rank: u64| {
            ranks
                .binary_search(&rank)
                .ok()
                .and_then(|i| values.get(i))
                .copied()
                .unwrap_or(f64::NAN)
        };
        needs
            .iter()
            .map(|need| match need.t {
                None => value_of(need.rank),
                Some(t) => {
                    let (a, b) = (value_of(need.rank), value_of(need.rank + 1));
                    // numpy's _lerp, operation for operation: exact mode matches it bit for bit.
                    let d = b - a;
                    if t >= 0.5 {
                        b - d * (1.0 - t)
                    } else {
                        a + d * t
                    }
                }
            })
            .collect()
    }

    /// The rank-th smallest value (0-based; ranks past the end give the largest): exact while
    /// every value is kept, within `relative_accuracy` after. NaN when empty.
    pub fn value_at_rank(&self, rank: u64) -> f64 {
        self.values_at_sorted_ranks(&[rank])
            .first()
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// The value at each rank (ascending ranks), in one walk over the bins.
    pub(crate) fn values_at_sorted_ranks(&self, ranks: &[u64]) -> Vec<f64> {
        if self.count == 0 {
            return vec![f64::NAN; ranks.len()];
        }
        let last = self.count - 1;
        if self.is_exact() {
            return ranks
                .iter()
                .map(|&rank| {
                    let index = usize::try_from(rank.min(last)).unwrap_or(usize::MAX);
                    self.exact.get(index).copied().unwrap_or(self.max)
                })
                .collect();
        }
        // The extremes are known exactly; clamping to them can only move an estimate towards
        // the true value.
        let estimate = |rank: u64, bin_value: f64| {
            if rank == 0 {
                self.min
            } else if rank >= last {
                self.max
            } else {
                bin_value.max(self.min).min(self.max)
            }
        };
        let mut out = Vec::with_capacity(ranks.len());
        let mut pending = ranks.iter().copied().peekable();
        let mut seen = 0u64;
        // Values in ascending order: negative bins (negated keys ascend), zeros, positive bins.
        let (negative_counts, negative_first) = self.negative.used_counts();
        let (positive_counts, positive_first) = self.positive.used_counts();
        let runs = [
            (negative_counts, negative_first, true),
            (&[self.zeros][..], 0, false),
            (positive_counts, positive_first, false),
        ];
        for (run, (counts, first_key, negated)) in runs.into_iter().enumerate() {
            for (i, &count) in counts.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                seen += count;
                while let Some(rank) = pending.next_if(|&rank| rank < seen) {
                    let key = first_key + i as i64;
                    let bin_value = match (run, negated) {
                        (1, _) => 0.0,
                        (_, true) => -self.mapping.value(-key),
                        _ => self.mapping.value(key),
                    };
                    out.push(estimate(rank, bin_value));
                }
                if pending.peek().is_none() {
                    return out;
                }
            }
        }
        out.extend(pending.map(|_| self.max));
        out
    }
}

/// The rank a quantile needs, and for linear interpolation the weight of the next rank.
struct RankNeed {
    rank: u64,
    t: Option<f64>,
}

impl RankNeed {
    fn one(rank: u64) -> Self {
        RankNeed { rank, t: None }
    }
}

fn check_q(q: f64) -> Result<()> {
    if (0.0..=1.0).contains(&q) {
        Ok(())
    } else {
        Err(Error::value(
            "q",
            format!("must be in [0, 1], got {}", show(q)),
        ))
    }
}

/// A float the way Python prints it ("nan", "inf", "0.0"), for error messages.
pub(crate) fn show(x: f64) -> String {
    if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{x:?}")
    }
}

fn union(a: Option<(i64, i64)>, b: Option<(i64, i64)>) -> Option<(i64, i64)> {
    match (a, b) {
        (Some((a_lo, a_hi)), Some((b_lo, b_hi))) => Some((a_lo.min(b_lo), a_hi.max(b_hi))),
        (a, None) => a,
        (None, b) => b,
    }
}

fn width(range: Option<(i64, i64)>) -> usize {
    range.map_or(0, |(lo, hi)| (hi - lo) as usize + 1)
}

#[cfg(test)]
mod tests;
