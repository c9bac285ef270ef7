//! The block map: block id -> owning file, generation stamp, length, state, and the
//! replicas datanodes have reported. Lengths and stamps are persisted (edit log and
//! image); replicas are not (block reports rebuild them after a restart).
//!
//! Memory: an entry is 40 bytes in an [`IdTable`] slot (no key stored). Up to three replicas
//! are packed inline as `u32`s (node index, storage index, state); a block with more
//! moves its replicas to a side table.

use std::collections::HashMap;

use crate::ids::{BlockId, InodeId, FIRST_BLOCK_ID, FIRST_GEN_STAMP};
use crate::idtable::IdTable;

/// Inline replica slots per block (HDFS's default replication).
const INLINE_REPLICAS: usize = 3;
/// Marks an empty inline slot.
const EMPTY_SLOT: u32 = u32::MAX;
/// Datanode indexes use the top 24 bits of a packed replica.
pub const DATANODE_INDEX_MAX: u32 = (1 << 24) - 2;
/// Storages per datanode addressable in a packed replica (5 bits).
pub const STORAGES_PER_DATANODE_MAX: u8 = 31;

/// HDFS's BlockUCState.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockState {
    /// Finalized: length and stamp are final, at least min-replication replicas seen.
    Complete = 0,
    /// Being written by a client pipeline.
    UnderConstruction = 1,
    /// The client has committed the length; waiting for enough finalized replicas.
    Committed = 2,
    /// A lease recovery is reconciling its replicas.
    UnderRecovery = 3,
}

/// What we know of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplicaState {
    Finalized = 0,
    /// Being written (RBW) or waiting for recovery (RWR/RUR).
    BeingWritten = 1,
    /// Reported bad, or stale (wrong stamp or length): never served, deleted when safe.
    Corrupt = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    pub node: u32,
    pub storage: u8,
    pub state: ReplicaState,
}

impl Replica {
    fn pack(self) -> u32 {
        debug_assert!(self.node <= DATANODE_INDEX_MAX);
        (self.node << 8) | (u32::from(self.storage & 0x1f) << 3) | self.state as u32
    }

    fn unpack(packed: u32) -> Replica {
        let state = match packed & 7 {
            0 => ReplicaState::Finalized,
            1 => ReplicaState::BeingWritten,
            _ => ReplicaState::Corrupt,
        };
        Replica { node: packed >> 8, storage: ((packed >> 3) & 0x1f) as u8, state }
    }
}

#[derive(Debug, Clone)]
pub struct BlockEntry {
    pub file: InodeId,
    pub gen_stamp: u64,
    pub num_bytes: u64,
    replicas: [u32; INLINE_REPLICAS],
    pub state: BlockState,
    overflow: bool,
}

/// A block's persisted identity and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRecord {
    pub id: BlockId,
    pub gen_stamp: u64,
    pub num_bytes: u64,
}

#[derive(Debug)]
pub struct BlockMap {
    entries: IdTable<BlockEntry>,
    overflow: HashMap<BlockId, Vec<u32>>,
    /// Pipeline targets of blocks under construction (HDFS "expected locations").
    expected: HashMap<BlockId, Vec<Replica>>,
    /// Replicas known on each datanode (by node index), kept current by every change
    /// (full and incremental reports, deletions): a datanode report's numBlocks.
    replicas_per_node: Vec<u64>,
    next_block_id: u64,
    /// The last generation stamp handed out.
    gen_stamp: u64,
}

impl Default for BlockMap {
    fn default() -> Self {
        BlockMap {
            entries: IdTable::new(),
            overflow: HashMap::new(),
            expected: HashMap::new(),
            replicas_per_node: Vec::new(),
            next_block_id: FIRST_BLOCK_ID,
            gen_stamp: FIRST_GEN_STAMP - 1,
        }
    }
}

impl BlockMap {
    pub fn new() -> BlockMap {
        BlockMap::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Makes room for `blocks` more blocks (image loading).
    pub fn reserve(&mut self, blocks: usize) {
        self.entries.reserve_exact(blocks);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn next_block_id(&self) -> u64 {
        self.next_block_id
    }

    pub fn last_gen_stamp(&self) -> u64 {
        self.gen_stamp
    }

    pub fn allocate_block_id(&mut self) -> BlockId {
        let id = BlockId(self.next_block_id);
        self.next_block_id += 1;
        id
    }

    pub fn allocate_gen_stamp(&mut self) -> u64 {
        self.gen_stamp += 1;
        self.gen_stamp
    }

    /// Keeps the sequences above values seen in the log or image.
    pub fn note_block_id(&mut self, id: BlockId) {
        self.next_block_id = self.next_block_id.max(id.0.saturating_add(1));
    }

    pub fn note_gen_stamp(&mut self, gen_stamp: u64) {
        self.gen_stamp = self.gen_stamp.max(gen_stamp);
    }

    pub fn restore_sequences(&mut self, next_block_id: u64, gen_stamp: u64) {
        self.next_block_id = self.next_block_id.max(next_block_id);
        self.gen_stamp = self.gen_stamp.max(gen_stamp);
    }

    pub fn get(&self, id: BlockId) -> Option<&BlockEntry> {
        self.entries.get(id.0)
    }

    pub fn get_mut(&mut self, id: BlockId) -> Option<&mut BlockEntry> {
        self.entries.get_mut(id.0)
    }

    pub fn contains(&self, id: BlockId) -> bool {
        self.entries.contains(id.0)
    }

    pub fn record(&self, id: BlockId) -> Option<BlockRecord> {
        self.get(id).map(|e| BlockRecord { id, gen_stamp: e.gen_stamp, num_bytes: e.num_bytes })
    }

    /// Adds a block with no replicas; returns false if the id is taken.
    pub fn insert(&mut self, record: BlockRecord, file: InodeId, state: BlockState) -> bool {
        if self.entries.contains(record.id.0) {
            return false;
        }
        self.entries.insert(
            record.id.0,
            BlockEntry {
                file,
                gen_stamp: record.gen_stamp,
                num_bytes: record.num_bytes,
                replicas: [EMPTY_SLOT; INLINE_REPLICAS],
                state,
                overflow: false,
            },
        );
        self.note_block_id(record.id);
        self.note_gen_stamp(record.gen_stamp);
        true
    }

    /// Removes a block, returning its entry and the replicas it had.
    pub fn remove(&mut self, id: BlockId) -> Option<(BlockEntry, Vec<Replica>)> {
        let replicas = self.replicas(id);
        let entry = self.entries.remove(id.0)?;
        self.overflow.remove(&id);
        self.expected.remove(&id);
        for replica in &replicas {
            self.replica_gone(replica.node);
        }
        Some((entry, replicas))
    }

    /// Replicas known on a datanode.
    pub fn replica_count(&self, node: u32) -> u64 {
        self.replicas_per_node.get(node as usize).copied().unwrap_or(0)
    }

    fn replica_added(&mut self, node: u32) {
        let index = node as usize;
        if self.replicas_per_node.len() <= index {
            self.replicas_per_node.resize(index + 1, 0);
        }
        self.replicas_per_node[index] += 1;
    }

    fn replica_gone(&mut self, node: u32) {
        if let Some(count) = self.replicas_per_node.get_mut(node as usize) {
            *count = count.saturating_sub(1);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (BlockId, &BlockEntry)> {
        self.entries.iter().map(|(id, e)| (BlockId(id), e))
    }

    pub fn ids(&self) -> Vec<BlockId> {
        self.entries.iter().map(|(id, _)| BlockId(id)).collect()
    }

    pub fn replicas(&self, id: BlockId) -> Vec<Replica> {
        let Some(entry) = self.entries.get(id.0) else { return Vec::new() };
        if entry.overflow {
            self.overflow
                .get(&id)
                .map(|v| v.iter().map(|p| Replica::unpack(*p)).collect())
                .unwrap_or_default()
        } else {
            entry.replicas.iter().filter(|p| **p != EMPTY_SLOT).map(|p| Replica::unpack(*p)).collect()
        }
    }

    /// The replica on `node`, without allocating (block reports call this per block).
    pub fn replica_on(&self, id: BlockId, node: u32) -> Option<Replica> {
        let entry = self.entries.get(id.0)?;
        let find = |packed: &[u32]| {
            packed.iter().filter(|p| **p != EMPTY_SLOT).map(|p| Replica::unpack(*p)).find(|r| r.node == node)
        };
        if entry.overflow {
            self.overflow.get(&id).and_then(|list| find(list))
        } else {
            find(&entry.replicas)
        }
    }

    /// Adds or updates the replica on `replica.node`; returns false for unknown blocks.
    pub fn set_replica(&mut self, id: BlockId, replica: Replica) -> bool {
        let Some(added) = self.put_replica(id, replica) else { return false };
        if added {
            self.replica_added(replica.node);
        }
        true
    }

    /// Stores a replica: `Some(true)` if the node had none of this block before.
    fn put_replica(&mut self, id: BlockId, replica: Replica) -> Option<bool> {
        let entry = self.entries.get_mut(id.0)?;
        let packed = replica.pack();
        if entry.overflow {
            let list = self.overflow.entry(id).or_default();
            return match list.iter_mut().find(|p| Replica::unpack(**p).node == replica.node) {
                Some(slot) => {
                    *slot = packed;
                    Some(false)
                }
                None => {
                    list.push(packed);
                    Some(true)
                }
            };
        }
        if let Some(slot) =
            entry.replicas.iter_mut().find(|p| **p != EMPTY_SLOT && Replica::unpack(**p).node == replica.node)
        {
            *slot = packed;
            return Some(false);
        }
        if let Some(slot) = entry.replicas.iter_mut().find(|p| **p == EMPTY_SLOT) {
            *slot = packed;
            return Some(true);
        }
        let mut list: Vec<u32> = entry.replicas.to_vec();
        list.push(packed);
        entry.replicas = [EMPTY_SLOT; INLINE_REPLICAS];
        entry.overflow = true;
        self.overflow.insert(id, list);
        Some(true)
    }

    /// Removes the replica on `node`, if the block had one there.
    pub fn remove_replica(&mut self, id: BlockId, node: u32) -> Option<Replica> {
        let removed = self.take_replica(id, node)?;
        self.replica_gone(node);
        Some(removed)
    }

    fn take_replica(&mut self, id: BlockId, node: u32) -> Option<Replica> {
        let entry = self.entries.get_mut(id.0)?;
        if entry.overflow {
            let list = self.overflow.get_mut(&id)?;
            let position = list.iter().position(|p| Replica::unpack(*p).node == node)?;
            let removed = Replica::unpack(list.remove(position));
            if list.len() <= INLINE_REPLICAS {
                let mut inline = [EMPTY_SLOT; INLINE_REPLICAS];
                inline[..list.len()].copy_from_slice(list);
                entry.replicas = inline;
                entry.overflow = false;
                self.overflow.remove(&id);
            }
            return Some(removed);
        }
        let slot =
            entry.replicas.iter_mut().find(|p| **p != EMPTY_SLOT && Replica::unpack(**p).node == node)?;
        let removed = Replica::unpack(*slot);
        *slot = EMPTY_SLOT;
        Some(removed)
    }

    pub fn expected_locations(&self, id: BlockId) -> &[Replica] {
        self.expected.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn set_expected_locations(&mut self, id: BlockId, locations: Vec<Replica>) {
        if locations.is_empty() {
            self.expected.remove(&id);
        } else {
            self.expected.insert(id, locations);
        }
    }

    /// Heap bytes of the entry vector and side tables (allocator rounding not included).
    pub fn heap_bytes(&self) -> usize {
        self.entries.heap_bytes()
            + self.overflow.len() * (std::mem::size_of::<(BlockId, Vec<u32>)>() + 4 * 8)
            + self.expected.len() * (std::mem::size_of::<(BlockId, Vec<Replica>)>() + 3 * 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finalized(node: u32) -> Replica {
        Replica { node, storage: 1, state: ReplicaState::Finalized }
    }

    #[test]
    fn entries_are_compact() {
        assert_eq!(std::mem::size_of::<BlockEntry>(), 40);
        assert_eq!(std::mem::size_of::<Option<BlockEntry>>(), 40);
    }

    #[test]
    fn replicas_inline_then_overflow() {
        let mut map = BlockMap::new();
        let id = map.allocate_block_id();
        assert_eq!(id.0, FIRST_BLOCK_ID);
        assert_eq!(map.allocate_gen_stamp(), FIRST_GEN_STAMP);
        assert!(map.insert(
            BlockRecord { id, gen_stamp: 1001, num_bytes: 0 },
            InodeId(16386),
            BlockState::UnderConstruction
        ));
        assert!(!map.insert(
            BlockRecord { id, gen_stamp: 1001, num_bytes: 0 },
            InodeId(16386),
            BlockState::Complete
        ));
        for node in 0..5 {
            assert!(map.set_replica(id, finalized(node)));
        }
        assert_eq!(map.replicas(id).len(), 5);
        map.set_replica(id, Replica { node: 2, storage: 3, state: ReplicaState::Corrupt });
        assert_eq!(
            map.replica_on(id, 2),
            Some(Replica { node: 2, storage: 3, state: ReplicaState::Corrupt })
        );
        assert_eq!(map.replicas(id).len(), 5);
        assert_eq!((0..6).map(|n| map.replica_count(n)).collect::<Vec<_>>(), vec![1, 1, 1, 1, 1, 0]);
        assert!(map.remove_replica(id, 0).is_some());
        assert!(map.remove_replica(id, 1).is_some());
        assert!(map.remove_replica(id, 1).is_none());
        assert_eq!(map.replicas(id).iter().map(|r| r.node).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(map.overflow.is_empty(), "moved back inline");
        assert_eq!(map.replica_count(1), 0, "an update keeps the count, a removal lowers it");
        assert_eq!(map.replica_count(2), 1);
        let (entry, replicas) = map.remove(id).unwrap();
        assert_eq!(entry.file, InodeId(16386));
        assert_eq!(replicas.len(), 3);
        assert_eq!(
            (0..6).map(|n| map.replica_count(n)).sum::<u64>(),
            0,
            "a removed block takes its replicas"
        );
        assert!(map.get(id).is_none());
        let big = Replica { node: DATANODE_INDEX_MAX, storage: 31, state: ReplicaState::BeingWritten };
        assert_eq!(Replica::unpack(big.pack()), big);
    }
}
