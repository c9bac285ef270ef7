//! A map from ids to values, indexed directly by id: ids are cut into pages of
//! [`PAGE_SLOTS`], found through an [`IdMap`] keyed by page number. A well-filled page is
//! an array with one slot per id, so a lookup is two array reads instead of a search; a
//! page left with few live ids (deletions) becomes a short sorted list, so holes do not
//! cost a slot each forever. No allocation ever grows past one page: the table grows by
//! pages, without the large reallocations (and their resident leftovers) of one vector.
//!
//! Memory per live id: the value's size in a full page; in a sparse page the value plus
//! its 2-byte offset (padded to the value's alignment); a page turns dense once the list
//! would cost as much as the array and sparse again below half that, so a dense page
//! costs at most twice what the same ids cost as a list (for 8-byte values: 8 bytes per id
//! full, at most 32 at the lower bound; for the block map's 40-byte entries: 40 and 96).

use crate::idmap::IdMap;

const PAGE_BITS: u32 = 9;
/// Ids per page: 4 KiB of 8-byte slots.
pub const PAGE_SLOTS: usize = 1 << PAGE_BITS;

/// A sparse page holding more than this becomes dense: the list then costs as much as
/// the array.
fn sparse_len_max<V>() -> usize {
    let slot = std::mem::size_of::<Option<V>>().max(1);
    PAGE_SLOTS * slot / std::mem::size_of::<(u16, V)>().max(1)
}

/// A dense page holding fewer than this becomes sparse (half of [`sparse_len_max`], so a
/// page does not flip back and forth).
fn dense_live_min<V>() -> usize {
    sparse_len_max::<V>() / 2
}

#[derive(Debug, Clone)]
enum Page<V> {
    Dense {
        slots: Box<[Option<V>]>,
        live: usize,
    },
    /// (id within the page, value), sorted.
    Sparse(Vec<(u16, V)>),
}

#[derive(Debug, Clone)]
pub struct IdTable<V> {
    pages: IdMap<Page<V>>,
    live: usize,
}

impl<V> Default for IdTable<V> {
    fn default() -> Self {
        IdTable { pages: IdMap::new(), live: 0 }
    }
}

fn split(id: u64) -> (u64, usize) {
    (id >> PAGE_BITS, (id & (PAGE_SLOTS as u64 - 1)) as usize)
}

impl<V> Page<V> {
    fn get(&self, offset: usize) -> Option<&V> {
        match self {
            Page::Dense { slots, .. } => slots[offset].as_ref(),
            Page::Sparse(entries) => {
                let index = entries.binary_search_by_key(&(offset as u16), |(o, _)| *o).ok()?;
                Some(&entries[index].1)
            }
        }
    }

    fn get_mut(&mut self, offset: usize) -> Option<&mut V> {
        match self {
            Page::Dense { slots, .. } => slots[offset].as_mut(),
            Page::Sparse(entries) => {
                let index = entries.binary_search_by_key(&(offset as u16), |(o, _)| *o).ok()?;
                Some(&mut entries[index].1)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Page::Dense { live, .. } => *live,
            Page::Sparse(entries) => entries.len(),
        }
    }

    fn dense_from(entries: Vec<(u16, V)>) -> Page<V> {
        let live = entries.len();
        let mut slots: Box<[Option<V>]> = (0..PAGE_SLOTS).map(|_| None).collect();
        for (offset, value) in entries {
            slots[usize::from(offset)] = Some(value);
        }
        Page::Dense { slots, live }
    }

    fn sparse_from(slots: Box<[Option<V>]>, live: usize) -> Page<V> {
        let mut entries = Vec::with_capacity(live);
        for (offset, slot) in slots.into_vec().into_iter().enumerate() {
            if let Some(value) = slot {
                entries.push((offset as u16, value));
            }
        }
        Page::Sparse(entries)
    }

    /// Inserts or replaces; returns the previous value.
    fn insert(&mut self, offset: usize, value: V) -> Option<V> {
        match self {
            Page::Dense { slots, live } => {
                let previous = slots[offset].replace(value);
                if previous.is_none() {
                    *live += 1;
                }
                previous
            }
            Page::Sparse(entries) => {
                match entries.binary_search_by_key(&(offset as u16), |(o, _)| *o) {
                    Ok(index) => return Some(std::mem::replace(&mut entries[index].1, value)),
                    Err(index) => entries.insert(index, (offset as u16, value)),
                }
                if entries.len() > sparse_len_max::<V>() {
                    *self = Page::dense_from(std::mem::take(entries));
                }
                None
            }
        }
    }

    fn remove(&mut self, offset: usize) -> Option<V> {
        match self {
            Page::Dense { slots, live } => {
                let removed = slots[offset].take()?;
                *live -= 1;
                if *live < dense_live_min::<V>() {
                    let (slots, live) = (std::mem::take(slots), *live);
                    *self = Page::sparse_from(slots, live);
                }
                Some(removed)
            }
            Page::Sparse(entries) => {
                let index = entries.binary_search_by_key(&(offset as u16), |(o, _)| *o).ok()?;
                let (_, removed) = entries.remove(index);
                if entries.len() * 4 < entries.capacity() {
                    entries.shrink_to(entries.len() * 2);
                }
                Some(removed)
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Page::Dense { slots, .. } => std::mem::size_of_val(&**slots),
            Page::Sparse(entries) => entries.capacity() * std::mem::size_of::<(u16, V)>(),
        }
    }

    /// Live (offset, value) in offset order.
    fn entries(&self) -> Box<dyn Iterator<Item = (usize, &V)> + '_> {
        match self {
            Page::Dense { slots, .. } => {
                Box::new(slots.iter().enumerate().filter_map(|(o, v)| v.as_ref().map(|v| (o, v))))
            }
            Page::Sparse(entries) => Box::new(entries.iter().map(|(o, v)| (usize::from(*o), v))),
        }
    }

    fn entries_mut(&mut self) -> Box<dyn Iterator<Item = (usize, &mut V)> + '_> {
        match self {
            Page::Dense { slots, .. } => {
                Box::new(slots.iter_mut().enumerate().filter_map(|(o, v)| v.as_mut().map(|v| (o, v))))
            }
            Page::Sparse(entries) => Box::new(entries.iter_mut().map(|(o, v)| (usize::from(*o), v))),
        }
    }
}

impl<V> IdTable<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Makes room for the pages of `additional` more ids (loading an image of known size).
    pub fn reserve_exact(&mut self, additional: usize) {
        self.pages.reserve_exact(additional.div_ceil(PAGE_SLOTS));
    }

    pub fn get(&self, id: u64) -> Option<&V> {
        let (page, offset) = split(id);
        self.pages.get(page)?.get(offset)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        let (page, offset) = split(id);
        self.pages.get_mut(page)?.get_mut(offset)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, id: u64, value: V) -> Option<V> {
        let (page_number, offset) = split(id);
        let previous = match self.pages.get_mut(page_number) {
            Some(page) => page.insert(offset, value),
            None => {
                self.pages.insert(page_number, Page::Sparse(vec![(offset as u16, value)]));
                None
            }
        };
        if previous.is_none() {
            self.live += 1;
        }
        previous
    }

    pub fn remove(&mut self, id: u64) -> Option<V> {
        let (page_number, offset) = split(id);
        let page = self.pages.get_mut(page_number)?;
        let removed = page.remove(offset)?;
        if page.len() == 0 {
            self.pages.remove(page_number);
        }
        self.live -= 1;
        Some(removed)
    }

    /// Live entries in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.pages.iter().flat_map(|(number, page)| {
            page.entries().map(move |(offset, value)| ((number << PAGE_BITS) | offset as u64, value))
        })
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut V)> {
        self.pages.iter_mut().flat_map(|(number, page)| {
            page.entries_mut().map(move |(offset, value)| ((number << PAGE_BITS) | offset as u64, value))
        })
    }

    /// Bytes held by the page index and the pages (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.pages.heap_bytes() + self.pages.iter().map(|(_, page)| page.heap_bytes()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::num::NonZeroU64;

    /// 8-byte values whose Option is 8 bytes too, as the inode table's boxes.
    fn value(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n + 1).expect("not zero")
    }

    /// Random inserts, replacements and removals (dense runs, scattered ids, pages that
    /// fill up and empty again, ids near u64::MAX) agree with a BTreeMap at every step.
    #[test]
    fn behaves_as_an_ordered_map() {
        let mut table = IdTable::new();
        let mut model = BTreeMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            state >> 11
        };
        let mut dense_seen = false;
        for step in 0..200_000u64 {
            let choice = next() % 100;
            let id = match next() % 10 {
                0 => u64::MAX - next() % 2000,
                1 => next(),
                _ => 16_384 + next() % 20_000,
            };
            if choice < 60 {
                assert_eq!(table.insert(id, value(step)), model.insert(id, value(step)), "insert {id}");
            } else {
                assert_eq!(table.remove(id), model.remove(&id), "remove {id}");
            }
            assert_eq!(table.get(id), model.get(&id));
            if step % 20_000 == 0 {
                assert_eq!(table.len(), model.len());
                assert!(table.iter().map(|(k, v)| (k, *v)).eq(model.iter().map(|(k, v)| (*k, *v))));
                dense_seen |= table.pages.iter().any(|(_, page)| matches!(page, Page::Dense { .. }));
            }
        }
        assert!(dense_seen, "the run went through dense pages");
        for (_, v) in table.iter_mut() {
            *v = v.checked_add(1).expect("small");
        }
        let bumped = model.iter().map(|(k, v)| (*k, v.checked_add(1).expect("small")));
        assert!(table.iter().map(|(k, v)| (k, *v)).eq(bumped));
    }

    #[test]
    fn pages_turn_dense_and_back_to_sparse() {
        let mut table = IdTable::new();
        for id in 0..PAGE_SLOTS as u64 {
            table.insert(id, value(id));
        }
        assert!(matches!(table.pages.get(0), Some(Page::Dense { live, .. }) if *live == PAGE_SLOTS));
        let min = dense_live_min::<NonZeroU64>();
        assert_eq!((sparse_len_max::<NonZeroU64>(), min), (256, 128), "list entries take 16 bytes");
        assert_eq!(sparse_len_max::<crate::blocks::BlockEntry>(), 426, "40-byte slots, 48-byte entries");
        for id in 0..(PAGE_SLOTS - min + 1) as u64 {
            assert_eq!(table.remove(id), Some(value(id)));
        }
        assert!(matches!(table.pages.get(0), Some(Page::Sparse(entries)) if entries.len() < min));
        assert_eq!(table.get(PAGE_SLOTS as u64 - 1), Some(&value(PAGE_SLOTS as u64 - 1)));
        for id in (PAGE_SLOTS - min + 1) as u64..PAGE_SLOTS as u64 {
            table.remove(id);
        }
        assert!(table.pages.is_empty(), "an empty page is dropped");
        assert!(table.is_empty());
    }
}
