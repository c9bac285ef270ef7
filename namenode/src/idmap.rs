//! A map from monotonically allocated ids (inode ids, block ids) to values, stored as one
//! sorted vector: new ids append at the end, lookups binary-search, removals leave a
//! tombstone that a later compaction drops. Per entry it costs the key plus the value,
//! with no hash-table slack; growth is bounded to 1/8 over the live size.

/// Compaction runs when tombstones exceed this share of the entries (1/2).
const TOMBSTONE_SHARE_MAX_DIVISOR: usize = 2;
/// Below this many entries, tombstones are not worth compacting.
const COMPACT_SIZE_MIN: usize = 64;
/// Growth step as a fraction of the current size (1/8), so spare capacity stays small.
const GROWTH_DIVISOR: usize = 8;
const GROWTH_MIN: usize = 16;

#[derive(Debug, Clone)]
pub struct IdMap<V> {
    entries: Vec<(u64, Option<V>)>,
    live: usize,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { entries: Vec::new(), live: 0 }
    }
}

impl<V> IdMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.live
    }

    /// Makes room for `additional` more entries exactly (loading an image of known size).
    pub fn reserve_exact(&mut self, additional: usize) {
        self.entries.reserve_exact(additional);
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Where `id` is (Ok) or would go (Err). Ids are handed out in order, so they are
    /// spread nearly evenly over the vector: interpolation guesses the slot, then a
    /// galloping search around the guess finishes in a few probes instead of the ~20
    /// cache misses a plain binary search costs at a million entries.
    fn position(&self, id: u64) -> Result<usize, usize> {
        let count = self.entries.len();
        let (Some((first, _)), Some((last, _))) = (self.entries.first(), self.entries.last()) else {
            return Err(0);
        };
        let (first, last) = (*first, *last);
        if id >= last {
            return if id == last { Ok(count - 1) } else { Err(count) };
        }
        if id <= first {
            return if id == first { Ok(0) } else { Err(0) };
        }
        if last - first == count as u64 - 1 {
            // No gaps between the keys: the slot is the offset.
            return Ok((id - first) as usize);
        }
        let span = u128::from(last - first);
        let guess = (u128::from(id - first) * (count as u128 - 1) / span) as usize;
        let key_at = |i: usize| self.entries[i].0;
        let (low, high) = if key_at(guess) < id {
            // Gallop right until a key reaches id.
            let (mut low, mut step) = (guess + 1, 1usize);
            loop {
                let probe = guess.saturating_add(step).min(count - 1);
                if key_at(probe) >= id {
                    break (low, probe + 1);
                }
                low = probe + 1;
                step *= 2;
            }
        } else {
            // Gallop left until a key falls below id.
            let (mut high, mut step) = (guess + 1, 1usize);
            loop {
                let probe = guess.saturating_sub(step);
                if key_at(probe) < id {
                    break (probe + 1, high);
                }
                high = probe + 1;
                if probe == 0 {
                    break (0, high);
                }
                step *= 2;
            }
        };
        match self.entries[low..high].binary_search_by_key(&id, |(k, _)| *k) {
            Ok(i) => Ok(low + i),
            Err(i) => Err(low + i),
        }
    }

    pub fn get(&self, id: u64) -> Option<&V> {
        let index = self.position(id).ok()?;
        self.entries[index].1.as_ref()
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        let index = self.position(id).ok()?;
        self.entries[index].1.as_mut()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    fn reserve_one(&mut self) {
        if self.entries.len() == self.entries.capacity() {
            let extra = (self.entries.len() / GROWTH_DIVISOR).max(GROWTH_MIN);
            self.entries.reserve_exact(extra);
        }
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, id: u64, value: V) -> Option<V> {
        match self.position(id) {
            Ok(index) => {
                let previous = self.entries[index].1.replace(value);
                if previous.is_none() {
                    self.live += 1;
                }
                previous
            }
            Err(index) => {
                self.reserve_one();
                self.entries.insert(index, (id, Some(value)));
                self.live += 1;
                None
            }
        }
    }

    pub fn remove(&mut self, id: u64) -> Option<V> {
        let index = self.position(id).ok()?;
        let removed = self.entries[index].1.take();
        if removed.is_some() {
            self.live -= 1;
            if index == self.entries.len() - 1 {
                self.entries.pop();
            }
            self.maybe_compact();
        }
        removed
    }

    fn maybe_compact(&mut self) {
        let tombstones = self.entries.len() - self.live;
        if self.entries.len() >= COMPACT_SIZE_MIN
            && tombstones * TOMBSTONE_SHARE_MAX_DIVISOR > self.entries.len()
        {
            self.entries.retain(|(_, v)| v.is_some());
            let spare = self.entries.len() / GROWTH_DIVISOR;
            self.entries.shrink_to(self.entries.len() + spare);
        }
    }

    /// Live entries in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.entries.iter().filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut V)> {
        self.entries.iter_mut().filter_map(|(k, v)| v.as_mut().map(|v| (*k, v)))
    }

    /// Bytes held by the entry vector (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(u64, Option<V>)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolated_positions_match_binary_search() {
        let mut map = IdMap::new();
        let mut keys = Vec::new();
        let mut state = 12345u64;
        let mut next = 100u64;
        for _ in 0..5000 {
            // Uneven gaps: mostly dense, sometimes large jumps.
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            next += if state >> 60 == 0 { state >> 40 } else { 1 + (state >> 62) };
            keys.push(next);
            map.insert(next, ());
        }
        for probe in [0, 99, 100, keys[0], keys[1] - 1, keys[4999], keys[4999] + 1, u64::MAX] {
            assert_eq!(
                map.position(probe),
                map.entries.binary_search_by_key(&probe, |(k, _)| *k),
                "probe {probe}"
            );
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(map.position(*key), Ok(i));
            assert_eq!(map.position(key + 1), map.entries.binary_search_by_key(&(key + 1), |(k, _)| *k));
            assert_eq!(map.position(key - 1), map.entries.binary_search_by_key(&(key - 1), |(k, _)| *k));
        }
    }

    #[test]
    fn appends_removes_and_compacts() {
        let mut map = IdMap::new();
        for id in 0..1000u64 {
            assert!(map.insert(id, id * 2).is_none());
        }
        assert_eq!(map.len(), 1000);
        assert_eq!(map.get(500), Some(&1000));
        for id in (0..1000u64).filter(|id| id % 3 != 0) {
            assert_eq!(map.remove(id), Some(id * 2));
        }
        assert_eq!(map.len(), 334);
        assert!(map.entries.len() < 1000, "compaction dropped tombstones");
        assert_eq!(map.get(3), Some(&6));
        assert_eq!(map.get(4), None);
        // Out-of-order inserts still keep the map sorted.
        map.insert(4, 8);
        map.insert(2000, 1);
        map.insert(1500, 2);
        let keys: Vec<u64> = map.iter().map(|(k, _)| k).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(map.insert(4, 9), Some(8));
    }
}
