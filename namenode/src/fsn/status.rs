//! Building the protos clients read: file statuses and located blocks, with the exact
//! field conventions Java and hdfs-native rely on (required fields always present, one
//! storage id and type per location, empty-but-present tokens).

use std::net::IpAddr;

use bytes::Bytes;
use ringfs_common::proto::hdfs::hdfs_file_status_proto::FileType;
use ringfs_common::proto::hdfs::{
    DatanodeInfoProto, ExtendedBlockProto, FsPermissionProto, HdfsFileStatusProto, LocatedBlockProto,
    LocatedBlocksProto,
};

use super::Namesystem;
use crate::blocks::{BlockState, ReplicaState};
use crate::datanodes::empty_token;
use crate::ids::{BlockId, InodeId};
use crate::namespace::Body;
use crate::placement::sort_for_reader;

/// Where a reader sits, for ordering replica locations.
#[derive(Debug, Clone, Default)]
pub struct ClientLocation {
    pub node: Option<u32>,
    pub rack: Option<String>,
}

impl Namesystem {
    /// A datanode as clients and reports see it, with the replicas it holds.
    pub fn datanode_info(&self, node: u32) -> DatanodeInfoProto {
        self.datanodes.info(node, self.blocks.replica_count(node))
    }

    pub fn client_location(&self, ip: IpAddr) -> ClientLocation {
        let node = self.datanodes.on_host(ip);
        let rack = node.map(|n| self.datanodes.node(n).rack.clone());
        ClientLocation { node, rack }
    }

    /// Bytes of a file, counting the last block even while it is being written.
    pub fn file_length(&self, id: InodeId) -> u64 {
        self.ns.get(id).map(|inode| inode.blocks().iter().map(|b| self.block_length(*b)).sum()).unwrap_or(0)
    }

    pub fn block_length(&self, id: BlockId) -> u64 {
        self.blocks.get(id).map(|e| e.num_bytes).unwrap_or(0)
    }

    /// Bytes of a file not counting a last block that is not complete
    /// (INodeFile.computeFileSizeNotIncludingLastUcBlock).
    pub fn file_length_complete(&self, id: InodeId) -> u64 {
        let Some(inode) = self.ns.get(id) else { return 0 };
        let blocks = inode.blocks();
        let Some((last, rest)) = blocks.split_last() else { return 0 };
        let rest: u64 = rest.iter().map(|b| self.block_length(*b)).sum();
        let last_complete = self.blocks.get(*last).is_some_and(|e| e.state == BlockState::Complete);
        rest + if last_complete { self.block_length(*last) } else { 0 }
    }

    pub fn extended_block(&self, id: BlockId) -> ExtendedBlockProto {
        let entry = self.blocks.get(id);
        ExtendedBlockProto {
            pool_id: self.info.block_pool_id.clone(),
            block_id: id.0,
            generation_stamp: entry.map(|e| e.gen_stamp).unwrap_or(0),
            num_bytes: Some(entry.map(|e| e.num_bytes).unwrap_or(0)),
        }
    }

    /// A located block naming `nodes` (node index, storage index) as its locations.
    pub fn located_block(
        &self,
        b: ExtendedBlockProto,
        offset: u64,
        nodes: &[(u32, u8)],
        corrupt: bool,
    ) -> LocatedBlockProto {
        let locs = nodes.iter().map(|(n, _)| self.datanode_info(*n)).collect();
        let storage_types = nodes.iter().map(|(n, s)| self.datanodes.node(*n).storage_type(*s)).collect();
        let storage_ids =
            nodes.iter().map(|(n, s)| self.datanodes.node(*n).storage_uuid(*s).to_string()).collect();
        LocatedBlockProto {
            b,
            offset,
            locs,
            corrupt,
            block_token: empty_token(),
            is_cached: vec![false; nodes.len()],
            storage_types,
            storage_i_ds: storage_ids,
            block_indices: None,
            block_tokens: Vec::new(),
        }
    }

    /// Where a reader should read a block from: good replicas (or, if every replica is
    /// corrupt, the corrupt ones, flagged), the pipeline for blocks being written.
    pub fn block_locations(&self, id: BlockId, client: &ClientLocation) -> (Vec<(u32, u8)>, bool) {
        let Some(entry) = self.blocks.get(id) else { return (Vec::new(), false) };
        let replicas = self.blocks.replicas(id);
        let live: Vec<_> = replicas.iter().filter(|r| self.datanodes.is_live(r.node)).copied().collect();
        let (mut nodes, corrupt): (Vec<(u32, u8)>, bool) = if entry.state != BlockState::Complete {
            let expected: Vec<(u32, u8)> = self
                .blocks
                .expected_locations(id)
                .iter()
                .filter(|r| self.datanodes.is_live(r.node))
                .map(|r| (r.node, r.storage))
                .collect();
            if expected.is_empty() {
                let usable =
                    live.iter().filter(|r| r.state != ReplicaState::Corrupt).map(|r| (r.node, r.storage));
                (usable.collect(), false)
            } else {
                (expected, false)
            }
        } else {
            let good: Vec<(u32, u8)> = live
                .iter()
                .filter(|r| r.state == ReplicaState::Finalized)
                .map(|r| (r.node, r.storage))
                .collect();
            if good.is_empty() && live.iter().any(|r| r.state == ReplicaState::Corrupt) {
                (live.iter().map(|r| (r.node, r.storage)).collect(), true)
            } else {
                (good, false)
            }
        };
        let mut order: Vec<u32> = nodes.iter().map(|(n, _)| *n).collect();
        sort_for_reader(&self.datanodes, &mut order, client.node, client.rack.as_deref(), &mut rand::rng());
        nodes.sort_by_key(|(n, _)| order.iter().position(|o| o == n));
        (nodes, corrupt)
    }

    /// LocatedBlocks for the byte range `[offset, offset + length)` of a file, as Java's
    /// BlockManager.createLocatedBlocks builds it.
    pub fn located_blocks(
        &self,
        file: InodeId,
        offset: u64,
        length: u64,
        client: &ClientLocation,
    ) -> LocatedBlocksProto {
        let blocks = self.ns.get(file).map(|i| i.blocks().to_vec()).unwrap_or_default();
        let under_construction = self.ns.under_construction(file).is_some();
        let file_length = self.file_length_complete(file);
        if blocks.is_empty() {
            return LocatedBlocksProto {
                file_length: 0,
                blocks: Vec::new(),
                under_construction,
                last_block: None,
                is_last_block_complete: false,
                file_encryption_info: None,
                ec_policy: None,
            };
        }
        let lengths: Vec<u64> = blocks.iter().map(|b| self.block_length(*b)).collect();
        let mut located = Vec::new();
        let block_count = if lengths[0] == 0 { 0 } else { blocks.len() };
        let mut position = 0u64;
        let mut current = 0usize;
        while current < block_count {
            if position + lengths[current] > offset {
                break;
            }
            position += lengths[current];
            current += 1;
        }
        if block_count == 0 || current < block_count {
            let end = offset.saturating_add(length);
            loop {
                let (nodes, corrupt) = self.block_locations(blocks[current], client);
                located.push(self.located_block(
                    self.extended_block(blocks[current]),
                    position,
                    &nodes,
                    corrupt,
                ));
                position += lengths[current];
                current += 1;
                if position >= end || current >= blocks.len() {
                    break;
                }
            }
        }
        let last = *blocks.last().expect("non-empty");
        let last_complete = self.blocks.get(last).is_some_and(|e| e.state == BlockState::Complete);
        let last_position =
            if last_complete { file_length.saturating_sub(self.block_length(last)) } else { file_length };
        let (nodes, corrupt) = self.block_locations(last, client);
        let last_block = self.located_block(self.extended_block(last), last_position, &nodes, corrupt);
        LocatedBlocksProto {
            file_length,
            blocks: located,
            under_construction,
            last_block: Some(last_block),
            is_last_block_complete: last_complete,
            file_encryption_info: None,
            ec_policy: None,
        }
    }

    /// HdfsFileStatusProto of an inode; `path` is what the client expects in the path
    /// field (empty for getFileInfo, the local name in listings).
    pub fn file_status(
        &self,
        id: InodeId,
        path: Bytes,
        need_location: Option<&ClientLocation>,
    ) -> HdfsFileStatusProto {
        let inode = self.ns.inode(id);
        let owner = self.ns.owner_name(inode).to_string();
        let group = self.ns.group_name(inode).to_string();
        let mut status = HdfsFileStatusProto {
            file_type: FileType::IsDir as i32,
            path,
            length: 0,
            permission: FsPermissionProto { perm: u32::from(inode.perm) },
            owner,
            group,
            modification_time: inode.mtime_ms.max(0) as u64,
            access_time: inode.atime_ms.max(0) as u64,
            symlink: None,
            block_replication: Some(0),
            blocksize: Some(0),
            locations: None,
            file_id: Some(id.0),
            children_num: Some(0),
            file_encryption_info: None,
            storage_policy: Some(0),
            ec_policy: None,
            flags: Some(0),
            namespace: None,
        };
        match &inode.body {
            Body::Directory(dir) => {
                status.children_num = Some(dir.children.len().min(i32::MAX as usize) as i32);
            }
            Body::File { blocksize, .. } => {
                status.file_type = FileType::IsFile as i32;
                status.length = self.file_length(id);
                status.block_replication = Some(u32::from(inode.replication));
                status.blocksize = Some(*blocksize);
                if let Some(client) = need_location {
                    status.locations = Some(self.located_blocks(id, 0, status.length, client));
                }
            }
        }
        status
    }
}
