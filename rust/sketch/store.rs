//! A dense bin store that collapses its lowest keys first, after DataDog's
//! `CollapsingLowestDenseStore` (sketches-java, `ddsketch/store`): a contiguous array of
//! counts over a window of keys; when the keys in use would span more than the store's bin
//! limit, every key below `highest - limit + 1` is counted in that bin instead. The upper keys,
//! the tail that matters for finding stragglers, keep their full accuracy.
//!
//! The sketch keeps negative values in a second store under the negated key, so that "lowest
//! key" means "lowest value" in both stores.

/// Allocation headroom when the window grows, so that a slowly widening range does not
/// reallocate for every new key.
const MIN_GROWTH: usize = 16;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Store {
    /// counts[i] is the count of key `offset + i`.
    counts: Vec<u64>,
    offset: i64,
    /// The keys in use: counts outside min_key..=max_key are zero. Meaningless when total == 0.
    min_key: i64,
    max_key: i64,
    total: u64,
}

impl Store {
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The first and last key in use, if any.
    pub fn range(&self) -> Option<(i64, i64)> {
        (self.total > 0).then_some((self.min_key, self.max_key))
    }

    /// The number of bins from the first to the last key in use.
    pub fn width(&self) -> usize {
        match self.range() {
            Some((lo, hi)) => (hi - lo) as usize + 1,
            None => 0,
        }
    }

    pub fn allocated_bins(&self) -> usize {
        self.counts.capacity()
    }

    fn count_at(&self, key: i64) -> u64 {
        key.checked_sub(self.offset)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.counts.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// The (key, count) pairs in use, lowest key first, zero counts skipped.
    pub fn bins(&self) -> impl Iterator<Item = (i64, u64)> + '_ {
        let (lo, hi) = self.range().unwrap_or((0, -1));
        (lo..=hi)
            .map(move |key| (key, self.count_at(key)))
            .filter(|(_, count)| *count > 0)
    }

    /// The counts of the keys in use, from the first to the last (zeros included), and the
    /// first key.
    pub fn used_counts(&self) -> (&[u64], i64) {
        let Some((lo, hi)) = self.range() else {
            return (&[], 0);
        };
        let start = (lo - self.offset) as usize;
        let end = (hi - self.offset) as usize + 1;
        (self.counts.get(start..end).unwrap_or(&[]), lo)
    }

    /// The counts of every key from the first to the last in use, zeros included.
    pub fn dense_counts(&self) -> impl Iterator<Item = u64> + '_ {
        let (lo, hi) = self.range().unwrap_or((0, -1));
        (lo..=hi).map(move |key| self.count_at(key))
    }

    /// Gets the store ready to receive keys in `lo..=hi` (a range that already includes the
    /// keys in use) within `limit` bins: collapses the keys in use below the returned floor
    /// into it and makes the window cover `floor..=hi`. Keys below the floor must then be
    /// counted at the floor.
    pub fn prepare(&mut self, lo: i64, hi: i64, limit: usize) -> i64 {
        let limit = limit.max(1) as i64;
        let floor = lo.max(hi.saturating_sub(limit - 1));
        let mut collapsed = 0u64;
        if self.total > 0 && self.min_key < floor {
            for key in self.min_key..=self.max_key.min(floor - 1) {
                collapsed += self.take(key);
            }
        }
        if !self.window_covers(floor, hi) {
            self.reallocate(floor, hi, floor > lo, limit as usize);
        }
        if collapsed > 0 {
            if let Some(slot) = self.slot(floor) {
                *slot += collapsed;
            }
            self.min_key = floor;
            self.max_key = self.max_key.max(floor);
        }
        floor
    }

    fn take(&mut self, key: i64) -> u64 {
        self.slot(key).map(std::mem::take).unwrap_or(0)
    }

    /// The counter of `key`, if the window holds it.
    #[inline(always)]
    pub fn slot(&mut self, key: i64) -> Option<&mut u64> {
        // Keys are far inside i64; a key below the window wraps to a huge index and misses.
        self.counts.get_mut(key.wrapping_sub(self.offset) as usize)
    }

    fn window_covers(&self, lo: i64, hi: i64) -> bool {
        lo >= self.offset
            && hi
                .checked_sub(self.offset)
                .is_some_and(|i| i < self.counts.len() as i64)
    }

    /// A new window holding `lo..=hi` plus headroom (above only when collapsing, since nothing
    /// will land below the floor), no wider than `limit` unless the range itself is.
    fn reallocate(&mut self, lo: i64, hi: i64, collapsing: bool, limit: usize) {
        let needed = (hi - lo) as usize + 1;
        let wanted = needed + (needed / 2).max(MIN_GROWTH);
        let len = wanted.min(limit.max(needed));
        let below = if collapsing { 0 } else { (len - needed) / 2 };
        let offset = lo - below as i64;
        let mut counts = vec![0u64; len];
        if let Some((used_lo, used_hi)) = self.range() {
            for key in used_lo.max(lo)..=used_hi {
                let count = self.count_at(key);
                if let Some(slot) = counts.get_mut((key - offset) as usize) {
                    *slot = count;
                }
            }
        }
        self.counts = counts;
        self.offset = offset;
    }

    /// Adds `count` at `key`, collapsing as needed to stay within `limit` bins.
    pub fn add(&mut self, key: i64, count: u64, limit: usize) {
        if count == 0 {
            return;
        }
        let (lo, hi) = match self.range() {
            Some((lo, hi)) => (lo.min(key), hi.max(key)),
            None => (key, key),
        };
        let floor = self.prepare(lo, hi, limit);
        let key = key.max(floor);
        if let Some(slot) = self.slot(key) {
            *slot += count;
        }
        self.note_added(key, key, count);
    }

    /// Records that `count` was added at keys within `lo..=hi` by direct slot access.
    pub fn note_added(&mut self, lo: i64, hi: i64, count: u64) {
        if count == 0 {
            return;
        }
        if self.total == 0 {
            self.min_key = lo;
            self.max_key = hi;
        } else {
            self.min_key = self.min_key.min(lo);
            self.max_key = self.max_key.max(hi);
        }
        self.total += count;
    }

    /// The counters and the key of the first one, for a batch of direct adds after
    /// `prepare`; `note_batch` must follow.
    pub fn window_mut(&mut self) -> (&mut [u64], i64) {
        (&mut self.counts, self.offset)
    }

    /// Records that `count` was added by direct slot access somewhere in the window.
    pub fn note_batch(&mut self, count: u64) {
        if count == 0 || self.counts.is_empty() {
            return;
        }
        self.total += count;
        self.min_key = self.offset;
        self.max_key = self.offset + self.counts.len() as i64 - 1;
        self.tighten();
    }

    /// Narrows the range in use to the keys whose counts are non-zero (after batch adds that
    /// recorded a conservative range).
    pub fn tighten(&mut self) {
        if self.total == 0 {
            return;
        }
        while self.min_key < self.max_key && self.count_at(self.min_key) == 0 {
            self.min_key += 1;
        }
        while self.max_key > self.min_key && self.count_at(self.max_key) == 0 {
            self.max_key -= 1;
        }
    }

    /// Rebuilds a store from decoded bins: `counts[i]` at key `first_key + i`. The caller has
    /// checked that the first and last counts are non-zero and that the total does not
    /// overflow.
    pub fn from_dense(first_key: i64, counts: Vec<u64>, total: u64) -> Store {
        if counts.is_empty() {
            return Store::default();
        }
        let max_key = first_key + counts.len() as i64 - 1;
        Store {
            counts,
            offset: first_key,
            min_key: first_key,
            max_key,
            total,
        }
    }
}

/// How many bins each store may use, given the widths they would have (`positive`,
/// `negative`) and the sketch's `max_bins`: the lowest values give way first, that is the
/// negative store (down to one bin) and then the positive store's low keys. A sketch holding
/// both signs keeps at least one bin for each.
pub fn plan_limits(positive: usize, negative: usize, max_bins: usize) -> (usize, usize) {
    if positive + negative <= max_bins {
        return (max_bins, max_bins);
    }
    let negative_kept = if negative == 0 {
        0
    } else {
        max_bins.saturating_sub(positive).clamp(1, negative)
    };
    (
        max_bins.saturating_sub(negative_kept).max(1),
        negative_kept.max(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(store: &Store) -> Vec<(i64, u64)> {
        store.bins().collect()
    }

    #[test]
    fn adds_and_reports_bins_in_key_order() {
        let mut store = Store::default();
        for key in [5, -3, 5, 100, 0] {
            store.add(key, 1, 1000);
        }
        assert_eq!(contents(&store), vec![(-3, 1), (0, 1), (5, 2), (100, 1)]);
        assert_eq!(store.total(), 5);
        assert_eq!(store.range(), Some((-3, 100)));
        assert_eq!(store.width(), 104);
    }

    #[test]
    fn collapses_the_lowest_keys_first() {
        let mut store = Store::default();
        for key in 0..10 {
            store.add(key, key as u64 + 1, 4);
        }
        // Keys 0..=6 all end up in bin 6; 7, 8 and 9 keep their counts.
        assert_eq!(contents(&store), vec![(6, 28), (7, 8), (8, 9), (9, 10)]);
        assert_eq!(store.width(), 4);
        assert_eq!(store.total(), 55);
    }

    #[test]
    fn a_key_below_the_window_lands_in_the_lowest_bin() {
        let mut store = Store::default();
        store.add(100, 1, 3);
        store.add(102, 1, 3);
        store.add(-50, 7, 3);
        assert_eq!(contents(&store), vec![(100, 8), (102, 1)]);
    }

    #[test]
    fn never_uses_more_than_its_limit() {
        let mut store = Store::default();
        let mut state = 12345u64;
        for _ in 0..10_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = (state >> 40) as i64 % 5000 - 2500;
            store.add(key, 1, 64);
            assert!(store.width() <= 64);
            assert!(store.allocated_bins() <= 64 + MIN_GROWTH);
        }
        assert_eq!(store.total(), 10_000);
        assert_eq!(store.bins().map(|(_, c)| c).sum::<u64>(), 10_000);
    }

    #[test]
    fn prepare_gives_a_window_for_direct_adds() {
        let mut store = Store::default();
        let floor = store.prepare(-10, 10, 100);
        assert_eq!(floor, -10);
        for key in -10..=10 {
            *store.slot(key).expect("inside the window") += 2;
        }
        store.note_added(-10, 10, 42);
        assert_eq!(store.total(), 42);
        assert_eq!(store.width(), 21);
    }

    #[test]
    fn tighten_drops_empty_ends() {
        let mut store = Store::default();
        store.prepare(0, 10, 100);
        *store.slot(3).expect("inside") += 1;
        *store.slot(7).expect("inside") += 1;
        store.note_added(0, 10, 2);
        store.tighten();
        assert_eq!(store.range(), Some((3, 7)));
    }

    #[test]
    fn plan_gives_way_to_the_negative_store_first() {
        assert_eq!(plan_limits(10, 5, 100), (100, 100));
        assert_eq!(plan_limits(10, 5, 12), (10, 2));
        assert_eq!(plan_limits(20, 5, 12), (11, 1));
        assert_eq!(plan_limits(20, 0, 12), (12, 1));
        assert_eq!(plan_limits(0, 20, 12), (1, 12));
        assert_eq!(plan_limits(3, 3, 1), (1, 1));
    }
}
