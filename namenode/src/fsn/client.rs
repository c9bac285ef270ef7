//! ClientProtocol operations with Java's semantics: the checks run in Java's order, the
//! same exception classes and messages come out, and each mutation is logged as
//! EditOps before the caller replies.

use std::collections::HashSet;

use bytes::Bytes;
use ringfs_common::proto::hdfs::{
    ContentSummaryProto, DatanodeIdProto, DatanodeInfoProto, DirectoryListingProto, ExtendedBlockProto,
    HdfsFileStatusProto, LocatedBlockProto, LocatedBlocksProto, QuotaUsageProto,
};

use super::{now_ms, Namesystem, SafeModeState};
use crate::blocks::{BlockRecord, BlockState, Replica, ReplicaState};
use crate::edits::EditOp;
use crate::error::{ErrorKind, FsError, FsResult};
use crate::ids::{BlockId, InodeId, ROOT_INODE_ID};
use crate::namespace::{Access, DirOp, ResolvedPath};
use crate::permission::{Caller, FsAction};
use crate::placement::{choose_targets, PlacementRequest};

/// CreateFlag bits.
pub const CREATE_FLAG_CREATE: u32 = 0x01;
pub const CREATE_FLAG_OVERWRITE: u32 = 0x02;
pub const CREATE_FLAG_APPEND: u32 = 0x04;
pub const CREATE_FLAG_NEW_BLOCK: u32 = 0x20;
/// AddBlockFlagProto values.
const ADD_BLOCK_NO_LOCAL_WRITE: i32 = 1;
const ADD_BLOCK_IGNORE_CLIENT_LOCALITY: i32 = 2;
/// "u+wx" added to directories created implicitly so their creator can use them.
const IMPLICIT_UWX: u16 = 0o300;
/// Setting times to -1 (sent as 2^64-1) leaves them unchanged.
pub const TIME_UNCHANGED: u64 = u64::MAX;
/// Holder name the namenode takes leases under while recovering them.
pub const NAMENODE_LEASE_HOLDER: &str = "HDFS_NameNode";

#[derive(Debug, Clone)]
pub struct CreateArgs {
    pub src: String,
    pub masked: u16,
    pub client_name: String,
    pub flags: u32,
    pub create_parent: bool,
    pub replication: u32,
    pub block_size: u64,
}

#[derive(Debug, Clone, Default)]
pub struct AddBlockArgs {
    pub src: String,
    pub client_name: String,
    pub previous: Option<ExtendedBlockProto>,
    pub exclude: Vec<DatanodeInfoProto>,
    pub file_id: Option<u64>,
    pub favored: Vec<String>,
    pub flags: Vec<i32>,
}

/// Java's RecoverLeaseOp names, used in lease error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseOp {
    Create,
    Append,
    Truncate,
}

impl LeaseOp {
    fn name(self) -> &'static str {
        match self {
            LeaseOp::Create => "CREATE_FILE",
            LeaseOp::Append => "APPEND_FILE",
            LeaseOp::Truncate => "TRUNCATE_FILE",
        }
    }
}

fn path_not_file(path: &str) -> FsError {
    FsError::not_found(format!("Path is not a file: {path}"))
}

impl Namesystem {
    fn permissions(&self) -> bool {
        self.config.permissions_enabled
    }

    fn resolve(&self, caller: &Caller, path: &str, op: DirOp) -> FsResult<ResolvedPath> {
        self.ns.resolve(caller, path, op, self.permissions())
    }

    fn check(&self, caller: &Caller, resolved: &ResolvedPath, access: Access) -> FsResult<()> {
        self.ns.check_access(caller, resolved, access, self.permissions())
    }

    fn path_access(&self, caller: &Caller, resolved: &ResolvedPath, action: FsAction) -> FsResult<()> {
        self.check(caller, resolved, Access { access: Some(action), ..Access::default() })
    }

    /// The file an RPC names: by inode id when the client sent one, else by path.
    fn file_for(&self, caller: &Caller, src: &str, file_id: Option<u64>) -> FsResult<Option<InodeId>> {
        match file_id.filter(|id| *id != 0) {
            Some(id) => Ok(self.ns.get(InodeId(id)).map(|_| InodeId(id))),
            None => Ok(self.resolve(caller, src, DirOp::Write)?.last()),
        }
    }

    /// FSNamesystem.checkLease: the file exists, is open, and `holder` owns its lease.
    fn check_lease(&self, src: &str, file: Option<InodeId>, holder: &str) -> FsResult<InodeId> {
        let no_leases = || match self.leases.get(holder) {
            Some(lease) => format!("Holder {holder} has {} open files.", lease.files.len()),
            None => format!("Holder {holder} does not have any open files."),
        };
        let Some(id) = file.filter(|id| self.ns.get(*id).is_some_and(|i| i.is_file())) else {
            return Err(FsError::not_found(format!("File does not exist: {src} {}", no_leases())));
        };
        let Some(uc) = self.ns.under_construction(id) else {
            return Err(FsError::lease(format!(
                "No lease on {src} (inode {id}): File is not open for writing. {}",
                no_leases()
            )));
        };
        if uc.client_name != holder {
            return Err(FsError::lease(format!(
                "Client (={holder}) is not the lease owner (={}: {src} (inode {id})",
                uc.client_name
            )));
        }
        Ok(id)
    }

    fn verify_replication(&self, src: &str, replication: u32, machine: &str) -> FsResult<u16> {
        if replication > u32::from(self.config.replication_max) {
            return Err(FsError::io(format!(
                "Requested replication factor of {replication} exceeds maximum of {} for {src} from {machine}",
                self.config.replication_max
            )));
        }
        if replication < u32::from(self.config.replication_min) {
            return Err(FsError::io(format!(
                "Requested replication factor of {replication} is less than the required minimum of {} for {src} from {machine}",
                self.config.replication_min
            )));
        }
        Ok(replication as u16)
    }

    fn reject_reserved(&self, resolved: &ResolvedPath) -> FsResult<()> {
        if resolved.components.first().is_some_and(|c| c == ".reserved") {
            return Err(FsError::new(
                ErrorKind::InvalidPath,
                format!("Invalid path name {} is a reserved name.", resolved.path),
            ));
        }
        Ok(())
    }

    /// Validates and logs the directories missing along `resolved` up to (but not
    /// including) index `upto` of its inode slots, returning the id of the last one.
    fn create_missing_dirs(
        &mut self,
        caller: &Caller,
        resolved: &ResolvedPath,
        upto: usize,
        perm_of: impl Fn(usize) -> u16,
        mtime_ms: i64,
    ) -> FsResult<InodeId> {
        let first_missing = resolved.first_missing().unwrap_or(resolved.inodes.len());
        let mut parent = resolved.inodes[first_missing - 1].expect("an existing ancestor");
        for i in first_missing..upto {
            let parent_inode = self.ns.inode(parent);
            let group = self.ns.group_name(parent_inode).to_string();
            let id = self.ns.allocate_inode_id();
            self.log(EditOp::Mkdir {
                id,
                parent,
                name: resolved.components[i - 1].clone(),
                owner: caller.user.clone(),
                group,
                perm: perm_of(i),
                mtime_ms,
            })?;
            parent = id;
        }
        Ok(parent)
    }

    /// Name and directory-size limits for every component to be created.
    fn validate_new_components(&self, resolved: &ResolvedPath) -> FsResult<()> {
        let first_missing = resolved.first_missing().unwrap_or(resolved.inodes.len());
        for i in first_missing..resolved.inodes.len() {
            self.ns.validate_child_name(&resolved.prefix(i - 1), &resolved.components[i - 1])?;
        }
        if first_missing < resolved.inodes.len() {
            let parent = resolved.inodes[first_missing - 1].expect("existing ancestor");
            self.ns.validate_directory_items(parent, &resolved.prefix(first_missing - 1))?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ reads

    pub fn get_file_info(&self, caller: &Caller, src: &str) -> FsResult<Option<HdfsFileStatusProto>> {
        let resolved = self.resolve(caller, src, DirOp::Read)?;
        Ok(resolved.last().map(|id| self.file_status(id, Bytes::new(), None)))
    }

    pub fn get_located_file_info(&self, caller: &Caller, src: &str) -> FsResult<Option<HdfsFileStatusProto>> {
        let resolved = self.resolve(caller, src, DirOp::Read)?;
        let client = self.client_location(caller.machine);
        Ok(resolved.last().map(|id| self.file_status(id, Bytes::new(), Some(&client))))
    }

    pub fn get_listing(
        &self,
        caller: &Caller,
        src: &str,
        start_after: &[u8],
        need_location: bool,
    ) -> FsResult<Option<DirectoryListingProto>> {
        let resolved = self.resolve(caller, src, DirOp::Read)?;
        let Some(id) = resolved.last() else { return Ok(None) };
        let client = need_location.then(|| self.client_location(caller.machine));
        let inode = self.ns.inode(id);
        if !inode.is_dir() {
            let status = self.file_status(id, Bytes::new(), client.as_ref());
            return Ok(Some(DirectoryListingProto { partial_listing: vec![status], remaining_entries: 0 }));
        }
        self.path_access(caller, &resolved, FsAction::ReadExecute)?;
        let children = inode.children();
        let start = self.ns.children_after(id, start_after);
        let end = (start + self.config.ls_limit).min(children.len());
        let listing = children[start.min(end)..end]
            .iter()
            .map(|child| {
                let name = Bytes::copy_from_slice(self.ns.inode(child.id).name.as_bytes());
                self.file_status(child.id, name, client.as_ref())
            })
            .collect();
        let remaining = children.len() - end;
        Ok(Some(DirectoryListingProto {
            partial_listing: listing,
            remaining_entries: remaining.min(u32::MAX as usize) as u32,
        }))
    }

    /// Located blocks of a file, and whether its access time is due an update.
    pub fn get_block_locations(
        &self,
        caller: &Caller,
        src: &str,
        offset: u64,
        length: u64,
    ) -> FsResult<(LocatedBlocksProto, Option<InodeId>)> {
        if offset > i64::MAX as u64 {
            return Err(FsError::illegal_argument(format!("Negative offset is not supported. File: {src}")));
        }
        if length > i64::MAX as u64 {
            return Err(FsError::illegal_argument(format!("Negative length is not supported. File: {src}")));
        }
        let resolved = self.resolve(caller, src, DirOp::Read)?;
        self.path_access(caller, &resolved, FsAction::Read)?;
        let id = resolved.last().ok_or_else(|| FsError::no_such_file(src))?;
        let inode = self.ns.inode(id);
        if !inode.is_file() {
            return Err(path_not_file(src));
        }
        let client = self.client_location(caller.machine);
        let located = self.located_blocks(id, offset, length, &client);
        let precision = self.config.access_time_precision_ms as i64;
        let atime_due = precision > 0 && now_ms() > inode.atime_ms + precision && !self.in_safemode();
        Ok((located, atime_due.then_some(id)))
    }

    /// Logs an access-time update decided by a read (HDFS's atime precision rule).
    pub fn update_access_time(&mut self, id: InodeId) -> FsResult<()> {
        let precision = self.config.access_time_precision_ms as i64;
        let now = now_ms();
        match self.ns.get(id) {
            Some(inode) if now > inode.atime_ms + precision && !self.in_safemode() => {
                self.log(EditOp::SetTimes { id, mtime_ms: None, atime_ms: Some(now) })?;
            }
            _ => {}
        }
        Ok(())
    }

    pub fn get_content_summary(&self, caller: &Caller, src: &str) -> FsResult<ContentSummaryProto> {
        let resolved = self.resolve(caller, src, DirOp::Read)?;
        let id = resolved.last().ok_or_else(|| FsError::no_such_file(src))?;
        self.check(
            caller,
            &resolved,
            Access { sub_access: Some(FsAction::ReadExecute), ..Access::default() },
        )?;
        let counts = self.ns.content_counts(id, |b| self.block_length(b));
        Ok(ContentSummaryProto {
            length: counts.length,
            file_count: counts.files,
            directory_count: counts.directories,
            quota: u64::MAX,
            space_consumed: counts.space_consumed,
            space_quota: u64::MAX,
            type_quota_infos: None,
            snapshot_length: None,
            snapshot_file_count: None,
            snapshot_directory_count: None,
            snapshot_space_consumed: None,
            erasure_coding_policy: None,
        })
    }

    pub fn get_quota_usage(&self, caller: &Caller, src: &str) -> FsResult<QuotaUsageProto> {
        let resolved = self.resolve(caller, src, DirOp::Read)?;
        let id = resolved.last().ok_or_else(|| FsError::no_such_file(src))?;
        self.check(
            caller,
            &resolved,
            Access { sub_access: Some(FsAction::ReadExecute), ..Access::default() },
        )?;
        let counts = self.ns.content_counts(id, |b| self.block_length(b));
        Ok(QuotaUsageProto {
            file_and_directory_count: counts.files + counts.directories,
            quota: u64::MAX,
            space_consumed: counts.space_consumed,
            space_quota: u64::MAX,
            type_quota_infos: None,
        })
    }

    pub fn check_access_rpc(&self, caller: &Caller, src: &str, mode: FsAction) -> FsResult<()> {
        let resolved = self.resolve(caller, src, DirOp::Read)?;
        if resolved.last().is_none() {
            return Err(FsError::not_found("Path not found"));
        }
        self.path_access(caller, &resolved, mode)
    }

    pub fn is_file_closed(&self, caller: &Caller, src: &str) -> FsResult<bool> {
        let resolved = self.resolve(caller, src, DirOp::Read)?;
        let id = resolved.last().ok_or_else(|| FsError::no_such_file(src))?;
        if !self.ns.inode(id).is_file() {
            return Err(path_not_file(src));
        }
        Ok(self.ns.under_construction(id).is_none())
    }

    pub fn get_preferred_block_size(&self, caller: &Caller, src: &str) -> FsResult<u64> {
        let resolved = self.resolve(caller, src, DirOp::Read)?;
        let id = resolved.last().ok_or_else(|| FsError::no_such_file(src))?;
        let inode = self.ns.inode(id);
        if !inode.is_file() {
            return Err(path_not_file(src));
        }
        Ok(inode.blocksize())
    }

    /// Extended attributes of a path: ringfs stores none (setXAttr is not supported), so
    /// asking for all returns an empty list and asking for named ones fails as in Java.
    pub fn get_xattrs(&self, caller: &Caller, src: &str, names_requested: bool) -> FsResult<()> {
        let resolved = self.resolve(caller, src, DirOp::Read)?;
        resolved.last().ok_or_else(|| FsError::no_such_file(src))?;
        self.path_access(caller, &resolved, FsAction::Read)?;
        if names_requested {
            return Err(FsError::io("At least one of the attributes provided was not found."));
        }
        Ok(())
    }

    /// Owner, group, sticky bit and permission; ringfs keeps no extended ACL entries.
    pub fn get_acl_status(&self, caller: &Caller, src: &str) -> FsResult<(String, String, u16)> {
        let resolved = self.resolve(caller, src, DirOp::Read)?;
        let id = resolved.last().ok_or_else(|| FsError::no_such_file(src))?;
        let inode = self.ns.inode(id);
        Ok((self.ns.owner_name(inode).to_string(), self.ns.group_name(inode).to_string(), inode.perm))
    }

    // --------------------------------------------------------------- mutations

    pub fn mkdirs(&mut self, caller: &Caller, src: &str, masked: u16, create_parent: bool) -> FsResult<bool> {
        self.check_safemode(&format!("Cannot create directory {src}"))?;
        let resolved = self.resolve(caller, src, DirOp::Create)?;
        if let Some(id) = resolved.last() {
            if self.ns.inode(id).is_file() {
                return Err(FsError::exists(format!("Path is not a directory: {}", resolved.path)));
            }
            return Ok(true);
        }
        self.reject_reserved(&resolved)?;
        self.check(caller, &resolved, Access { ancestor: Some(FsAction::Write), ..Access::default() })?;
        if !create_parent && resolved.parent().is_none() {
            return Err(FsError::not_found(format!(
                "Parent directory doesn't exist: {}",
                resolved.prefix(resolved.components.len() - 1)
            )));
        }
        self.validate_new_components(&resolved)?;
        let last = resolved.inodes.len() - 1;
        let masked = masked & 0o1777;
        let ancestors = (masked & 0o077) | ((masked & 0o700) | IMPLICIT_UWX);
        self.create_missing_dirs(
            caller,
            &resolved,
            last + 1,
            |i| if i == last { masked } else { ancestors },
            now_ms(),
        )?;
        Ok(true)
    }

    /// recoverLeaseInternal for create/append/truncate of a file someone holds open.
    fn recover_lease_for(
        &mut self,
        op: LeaseOp,
        file: InodeId,
        src: &str,
        holder: &str,
        machine: &str,
    ) -> FsResult<()> {
        let Some(uc) = self.ns.under_construction(file).cloned() else { return Ok(()) };
        let message = |reason: String| {
            format!("Failed to {} {src} for {holder} on {machine} because {reason}", op.name())
        };
        if uc.client_name == holder {
            return Err(FsError::new(
                ErrorKind::AlreadyBeingCreated,
                message(format!("{holder} is already the current lease holder.")),
            ));
        }
        let Some(lease) = self.leases.get(&uc.client_name) else {
            return Err(FsError::new(
                ErrorKind::AlreadyBeingCreated,
                message("the file is under construction but no leases found.".into()),
            ));
        };
        if lease.last_renewed.elapsed() > self.config.lease_soft_limit {
            if self.internal_release_lease(file, None)? {
                return Ok(());
            }
            return Err(FsError::new(
                ErrorKind::RecoveryInProgress,
                message("lease recovery is in progress. Try again later.".into()),
            ));
        }
        let last = self.ns.inode(file).blocks().last().copied();
        if last.and_then(|b| self.blocks.get(b)).is_some_and(|e| e.state == BlockState::UnderRecovery) {
            return Err(FsError::new(
                ErrorKind::RecoveryInProgress,
                message(format!(
                    "another recovery is in progress by {} on {}",
                    uc.client_name, uc.client_machine
                )),
            ));
        }
        Err(FsError::new(
            ErrorKind::AlreadyBeingCreated,
            message(format!(
                "this file lease is currently owned by {} on {}",
                uc.client_name, uc.client_machine
            )),
        ))
    }

    pub fn create(&mut self, caller: &Caller, args: &CreateArgs) -> FsResult<HdfsFileStatusProto> {
        let src = args.src.as_str();
        let machine = caller.machine.to_string();
        self.check_safemode(&format!("Cannot create file{src}"))?;
        if args.flags & (CREATE_FLAG_CREATE | CREATE_FLAG_OVERWRITE | CREATE_FLAG_APPEND) == 0 {
            return Err(FsError::illegal_argument(format!(
                "{} does not contain CREATE, OVERWRITE or APPEND",
                args.flags
            )));
        }
        let replication = self.verify_replication(src, args.replication, &machine)?;
        if args.block_size < self.config.min_block_size {
            return Err(FsError::io(format!(
                "Specified block size is less than configured minimum value (dfs.namenode.fs-limits.min-block-size): {} < {}",
                args.block_size, self.config.min_block_size
            )));
        }
        let overwrite = args.flags & CREATE_FLAG_OVERWRITE != 0;
        let resolved = self.resolve(caller, src, DirOp::Create)?;
        self.reject_reserved(&resolved)?;
        self.check(caller, &resolved, Access { ancestor: Some(FsAction::Write), ..Access::default() })?;
        let existing = resolved.last();
        match existing {
            Some(id) => {
                if self.ns.inode(id).is_dir() {
                    return Err(FsError::exists(format!("{} already exists as a directory", resolved.path)));
                }
                if overwrite {
                    self.path_access(caller, &resolved, FsAction::Write)?;
                }
            }
            None => {
                if !args.create_parent && resolved.parent().is_none() {
                    return Err(FsError::not_found(format!(
                        "Parent directory doesn't exist: {}",
                        resolved.prefix(resolved.components.len() - 1)
                    )));
                }
                if args.flags & CREATE_FLAG_CREATE == 0 {
                    return Err(FsError::not_found(format!("Can't overwrite non-existent {src}")));
                }
            }
        }
        if let (Some(id), false) = (existing, overwrite) {
            self.recover_lease_for(LeaseOp::Create, id, &resolved.path, &args.client_name, &machine)?;
            return Err(FsError::exists(format!("{} for client {machine} already exists", resolved.path)));
        }
        self.validate_new_components(&resolved)?;
        let now = now_ms();
        let mut resolved = resolved;
        if let Some(id) = existing {
            let applied = self.log(EditOp::Delete { id, mtime_ms: now })?;
            self.invalidate_removed(applied);
            let last = resolved.inodes.len() - 1;
            resolved.inodes[last] = None;
        }
        let last = resolved.inodes.len() - 1;
        let first_missing = resolved.first_missing().expect("the file itself is missing");
        let ancestor_perm = {
            let existing_parent = self.ns.inode(resolved.inodes[first_missing - 1].expect("ancestor"));
            (existing_parent.perm & 0o077) | ((existing_parent.perm & 0o700) | IMPLICIT_UWX)
        };
        let parent = self.create_missing_dirs(caller, &resolved, last, |_| ancestor_perm, now)?;
        let group = self.ns.group_name(self.ns.inode(parent)).to_string();
        let id = self.ns.allocate_inode_id();
        self.log(EditOp::CreateFile {
            id,
            parent,
            name: resolved.last_name().to_string(),
            owner: caller.user.clone(),
            group,
            perm: args.masked & 0o1777,
            mtime_ms: now,
            replication,
            blocksize: args.block_size,
            client_name: args.client_name.clone(),
            client_machine: machine,
        })?;
        Ok(self.file_status(id, Bytes::new(), None))
    }

    pub fn append(
        &mut self,
        caller: &Caller,
        src: &str,
        client_name: &str,
        flags: u32,
    ) -> FsResult<(Option<LocatedBlockProto>, HdfsFileStatusProto)> {
        let machine = caller.machine.to_string();
        self.check_safemode(&format!("Cannot append to file{src}"))?;
        let resolved = self.resolve(caller, src, DirOp::Write)?;
        self.path_access(caller, &resolved, FsAction::Write)?;
        let Some(id) = resolved.last() else {
            return Err(FsError::not_found(format!(
                "Failed to append to non-existent file {src} for client {machine}"
            )));
        };
        if !self.ns.inode(id).is_file() {
            return Err(path_not_file(src));
        }
        self.recover_lease_for(LeaseOp::Append, id, &resolved.path, client_name, &machine)?;
        let inode = self.ns.inode(id);
        let blocksize = inode.blocksize();
        let last = inode.blocks().last().copied();
        if let Some(last) = last {
            if self.blocks.get(last).is_some_and(|e| e.state != BlockState::Complete) {
                return Err(FsError::io(format!(
                    "append: lastBlock={last} of src={src} is not sufficiently replicated yet."
                )));
            }
        }
        let new_block = flags & CREATE_FLAG_NEW_BLOCK != 0;
        let open_last = match last {
            Some(last) if !new_block => self.block_length(last) < blocksize,
            _ => false,
        };
        self.log(EditOp::Reopen {
            file: id,
            client_name: client_name.to_string(),
            client_machine: machine,
            last_block_open: open_last,
        })?;
        let block = match (open_last, last) {
            (true, Some(last)) => {
                let offset = self.file_length(id) - self.block_length(last);
                let nodes: Vec<(u32, u8)> =
                    self.blocks.expected_locations(last).iter().map(|r| (r.node, r.storage)).collect();
                Some(self.located_block(self.extended_block(last), offset, &nodes, false))
            }
            _ => None,
        };
        Ok((block, self.file_status(id, Bytes::new(), None)))
    }

    pub fn add_block(&mut self, caller: &Caller, args: &AddBlockArgs) -> FsResult<LocatedBlockProto> {
        let src = args.src.as_str();
        self.check_safemode(&format!("Cannot add block to {src}"))?;
        let file = self.file_for(caller, src, args.file_id)?;
        let id = self.check_lease(src, file, &args.client_name)?;
        let inode = self.ns.inode(id);
        let blocks = inode.blocks().to_vec();
        let replication = inode.replication;
        let blocksize = inode.blocksize();
        let last = blocks.last().copied();
        let penultimate = (blocks.len() >= 2).then(|| blocks[blocks.len() - 2]);
        let matches = |block: Option<BlockId>, given: &Option<ExtendedBlockProto>| match (block, given) {
            (None, None) => true,
            (Some(b), Some(g)) => {
                b.0 == g.block_id && self.blocks.get(b).is_some_and(|e| e.gen_stamp == g.generation_stamp)
            }
            _ => false,
        };
        let mut previous_num_bytes = None;
        if matches(last, &args.previous) {
            if let (Some(last), Some(previous)) = (last, &args.previous) {
                let state = self.blocks.get(last).map(|e| e.state);
                if state != Some(BlockState::Complete) {
                    previous_num_bytes = Some(previous.num_bytes.unwrap_or(0));
                }
            }
        } else if args.previous.is_none()
            && last.and_then(|b| self.blocks.get(b)).is_some_and(|e| e.state == BlockState::Complete)
        {
            // First block of an append that starts at a block boundary (or NEW_BLOCK).
        } else if matches(penultimate, &args.previous) && last.is_some_and(|b| self.block_length(b) == 0) {
            // A retry of an addBlock whose reply was lost: hand back the same block.
            let last = last.expect("checked");
            let offset: u64 = blocks[..blocks.len() - 1].iter().map(|b| self.block_length(*b)).sum();
            let nodes: Vec<(u32, u8)> =
                self.blocks.expected_locations(last).iter().map(|r| (r.node, r.storage)).collect();
            return Ok(self.located_block(self.extended_block(last), offset, &nodes, false));
        } else {
            return Err(FsError::io(format!(
                "Cannot allocate block in {src}: passed 'previous' block {:?} does not match actual last block in file {:?}",
                args.previous.as_ref().map(|b| (b.block_id, b.generation_stamp)),
                last.and_then(|b| self.blocks.record(b)).map(|r| (r.id.0, r.gen_stamp))
            )));
        }
        if blocks.len() as u64 >= self.config.max_blocks_per_file {
            return Err(FsError::io(format!(
                "File has reached the limit on maximum number of blocks (dfs.namenode.fs-limits.max-blocks-per-file): {} >= {}",
                blocks.len(),
                self.config.max_blocks_per_file
            )));
        }
        let local_allowed = !args
            .flags
            .iter()
            .any(|f| *f == ADD_BLOCK_NO_LOCAL_WRITE || *f == ADD_BLOCK_IGNORE_CLIENT_LOCALITY);
        let excluded: HashSet<u32> = args.exclude.iter().filter_map(|d| self.datanodes.find(&d.id)).collect();
        let request = PlacementRequest {
            wanted: usize::from(replication),
            writer: if local_allowed { self.datanodes.on_host(caller.machine) } else { None },
            chosen: Vec::new(),
            excluded: excluded.clone(),
            favored: args.favored.iter().filter_map(|f| self.datanodes.find_addr(f)).collect(),
            blocksize,
        };
        let targets = choose_targets(&self.datanodes, &request, &mut rand::rng());
        if targets.len() < usize::from(self.config.replication_min) {
            return Err(FsError::io(format!(
                "File {src} could only be written to {} of the {} minReplication nodes. There are {} datanode(s) running and {} node(s) are excluded in this operation.",
                targets.len(),
                self.config.replication_min,
                self.datanodes.live_count(),
                excluded.len()
            )));
        }
        let block = BlockRecord {
            id: self.blocks.allocate_block_id(),
            gen_stamp: self.blocks.allocate_gen_stamp(),
            num_bytes: 0,
        };
        self.log(EditOp::AddBlock { file: id, block, previous_num_bytes })?;
        let nodes: Vec<(u32, u8)> =
            targets.iter().map(|t| (*t, self.datanodes.node(*t).preferred_storage())).collect();
        self.blocks.set_expected_locations(
            block.id,
            nodes
                .iter()
                .map(|(n, s)| Replica { node: *n, storage: *s, state: ReplicaState::BeingWritten })
                .collect(),
        );
        let offset: u64 = blocks.iter().map(|b| self.block_length(*b)).sum();
        Ok(self.located_block(self.extended_block(block.id), offset, &nodes, false))
    }

    /// Commits the client's view of the last block (length, stamp).
    fn commit_last_block(&mut self, id: InodeId, last: &ExtendedBlockProto) -> FsResult<()> {
        let Some(block) = self.ns.inode(id).blocks().last().copied() else { return Ok(()) };
        let entry = self.blocks.get(block).expect("file block in the map");
        if entry.state == BlockState::Complete {
            return Ok(());
        }
        if block.0 != last.block_id {
            return Err(FsError::io(format!(
                "Trying to commit inconsistent block: id = {}, expected id = {}",
                last.block_id, block.0
            )));
        }
        if entry.gen_stamp != last.generation_stamp {
            return Err(FsError::io(format!(
                "Commit block with mismatching GS. NN has blk_{}_{}, client submits blk_{}_{}",
                block.0, entry.gen_stamp, last.block_id, last.generation_stamp
            )));
        }
        let entry = self.blocks.get_mut(block).expect("exists");
        entry.num_bytes = last.num_bytes.unwrap_or(0);
        entry.state = BlockState::Committed;
        self.try_complete_block(block);
        Ok(())
    }

    /// Logs the close of a file whose blocks are all complete.
    fn close_file(&mut self, id: InodeId) -> FsResult<()> {
        let blocks: Vec<BlockRecord> =
            self.ns.inode(id).blocks().iter().filter_map(|b| self.blocks.record(*b)).collect();
        self.log(EditOp::CloseFile { file: id, mtime_ms: now_ms(), blocks })?;
        Ok(())
    }

    fn all_blocks_complete(&self, id: InodeId) -> bool {
        self.ns
            .inode(id)
            .blocks()
            .iter()
            .all(|b| self.blocks.get(*b).is_some_and(|e| e.state == BlockState::Complete))
    }

    pub fn complete(
        &mut self,
        caller: &Caller,
        src: &str,
        client_name: &str,
        last: Option<&ExtendedBlockProto>,
        file_id: Option<u64>,
    ) -> FsResult<bool> {
        self.check_safemode(&format!("Cannot complete file {src}"))?;
        let file = self.file_for(caller, src, file_id)?;
        let id = match self.check_lease(src, file, client_name) {
            Ok(id) => id,
            Err(e) => {
                // A retried complete of a file already closed with this last block.
                if let Some(id) = file.filter(|f| self.ns.get(*f).is_some_and(|i| i.is_file())) {
                    if self.ns.under_construction(id).is_none() {
                        let real_last =
                            self.ns.inode(id).blocks().last().and_then(|b| self.blocks.record(*b));
                        let same = match (real_last, last) {
                            (None, None) => true,
                            (Some(r), Some(l)) => r.id.0 == l.block_id && r.gen_stamp == l.generation_stamp,
                            _ => false,
                        };
                        if same {
                            return Ok(true);
                        }
                    }
                }
                return Err(e);
            }
        };
        if let Some(last) = last {
            self.commit_last_block(id, last)?;
        }
        if !self.all_blocks_complete(id) {
            return Ok(false);
        }
        self.close_file(id)?;
        Ok(true)
    }

    pub fn abandon_block(
        &mut self,
        caller: &Caller,
        block: &ExtendedBlockProto,
        src: &str,
        holder: &str,
        file_id: Option<u64>,
    ) -> FsResult<()> {
        self.check_safemode(&format!("Cannot abandon block blk_{} for file{src}", block.block_id))?;
        let file = self.file_for(caller, src, file_id)?;
        let id = self.check_lease(src, file, holder)?;
        let blocks = self.ns.inode(id).blocks().to_vec();
        if blocks.last().map(|b| b.0) != Some(block.block_id) {
            return Ok(());
        }
        let kept: Vec<BlockRecord> =
            blocks[..blocks.len() - 1].iter().filter_map(|b| self.blocks.record(*b)).collect();
        let applied = self.log(EditOp::UpdateBlocks { file: id, blocks: kept, mtime_ms: None })?;
        self.invalidate_removed(applied);
        Ok(())
    }

    pub fn fsync(
        &mut self,
        caller: &Caller,
        src: &str,
        client_name: &str,
        last_block_length: Option<i64>,
        file_id: Option<u64>,
    ) -> FsResult<()> {
        self.check_safemode(&format!("Cannot fsync file {src}"))?;
        let file = self.file_for(caller, src, file_id)?;
        let id = self.check_lease(src, file, client_name)?;
        let mut records: Vec<BlockRecord> =
            self.ns.inode(id).blocks().iter().filter_map(|b| self.blocks.record(*b)).collect();
        if let (Some(length), Some(last)) = (last_block_length.filter(|l| *l > 0), records.last_mut()) {
            last.num_bytes = length as u64;
        }
        self.log(EditOp::UpdateBlocks { file: id, blocks: records, mtime_ms: None })?;
        Ok(())
    }

    pub fn delete(&mut self, caller: &Caller, src: &str, recursive: bool) -> FsResult<bool> {
        self.check_safemode(&format!("Cannot delete {src}"))?;
        let resolved = self.resolve(caller, src, DirOp::Write)?;
        self.check(
            caller,
            &resolved,
            Access {
                parent: Some(FsAction::Write),
                sub_access: Some(FsAction::All),
                ignore_empty_dir: true,
                ..Access::default()
            },
        )?;
        let Some(id) = resolved.last() else { return Ok(false) };
        let inode = self.ns.inode(id);
        if inode.is_dir() && !inode.children().is_empty() && !recursive {
            return Err(FsError::new(
                ErrorKind::PathIsNotEmptyDirectory,
                format!("{} is non empty", resolved.path),
            ));
        }
        if id == ROOT_INODE_ID {
            return Ok(false);
        }
        let applied = self.log(EditOp::Delete { id, mtime_ms: now_ms() })?;
        self.invalidate_removed(applied);
        Ok(true)
    }

    fn rename_checks(&self, caller: &Caller, source: &ResolvedPath, target: &ResolvedPath) -> FsResult<()> {
        self.check(caller, source, Access { parent: Some(FsAction::Write), ..Access::default() })?;
        self.check(caller, target, Access { ancestor: Some(FsAction::Write), ..Access::default() })
    }

    fn rename_limits(&self, source: &ResolvedPath, target: &ResolvedPath) -> FsResult<()> {
        let parent = target.parent().expect("checked by the caller");
        self.ns.validate_child_name(&target.prefix(target.components.len() - 1), target.last_name())?;
        if source.parent() != Some(parent) {
            self.ns.validate_directory_items(parent, &target.prefix(target.components.len() - 1))?;
        }
        Ok(())
    }

    fn is_under(target: &str, source: &str) -> bool {
        target.len() > source.len()
            && target.starts_with(source)
            && (source == "/" || target.as_bytes()[source.len()] == b'/')
    }

    /// The old rename: false (no exception) when it cannot be done; a directory target
    /// receives the source inside it.
    pub fn rename(&mut self, caller: &Caller, src: &str, dst: &str) -> FsResult<bool> {
        self.check_safemode(&format!("Cannot rename {src}"))?;
        if ringfs_common::path::components(dst).is_err() {
            return Err(FsError::io(format!("Invalid name: {dst}")));
        }
        let source = self.resolve(caller, src, DirOp::Write)?;
        let mut target = self.resolve(caller, dst, DirOp::Create)?;
        if let Some(id) = target.last() {
            if self.ns.inode(id).is_dir() && !source.is_root() {
                let into = format!("{}/{}", target.path.trim_end_matches('/'), source.last_name());
                target = self.ns.resolve_unchecked(&into)?;
            }
        }
        self.rename_checks(caller, &source, &target)?;
        let Some(source_id) = source.last() else { return Ok(false) };
        if source.is_root() {
            return Ok(false);
        }
        if target.path == source.path {
            return Ok(true);
        }
        if Self::is_under(&target.path, &source.path) || target.last().is_some() || target.is_root() {
            return Ok(false);
        }
        let Some(parent) = target.parent() else { return Ok(false) };
        if !self.ns.inode(parent).is_dir() {
            return Ok(false);
        }
        self.rename_limits(&source, &target)?;
        self.log(EditOp::Rename {
            id: source_id,
            new_parent: parent,
            new_name: target.last_name().to_string(),
            mtime_ms: now_ms(),
        })?;
        Ok(true)
    }

    /// rename2: POSIX-like, throws instead of returning false, honours OVERWRITE.
    pub fn rename2(&mut self, caller: &Caller, src: &str, dst: &str, overwrite: bool) -> FsResult<()> {
        self.check_safemode(&format!("Cannot rename {src}"))?;
        if ringfs_common::path::components(dst).is_err() {
            return Err(FsError::new(ErrorKind::InvalidPath, format!("Invalid name: {dst}")));
        }
        let source = self.resolve(caller, src, DirOp::Write)?;
        let target = self.resolve(caller, dst, DirOp::Create)?;
        self.rename_checks(caller, &source, &target)?;
        let Some(source_id) = source.last() else {
            return Err(FsError::not_found(format!("rename source {} is not found.", source.path)));
        };
        if source.is_root() {
            return Err(FsError::io("rename source cannot be the root"));
        }
        if target.path == source.path {
            return Err(FsError::exists(format!(
                "The source {} and destination {} are the same",
                source.path, target.path
            )));
        }
        if Self::is_under(&target.path, &source.path) {
            return Err(FsError::io(format!(
                "Rename destination {} is a directory or file under source {}",
                target.path, source.path
            )));
        }
        if target.is_root() {
            return Err(FsError::io("rename destination cannot be the root"));
        }
        self.reject_reserved(&target)?;
        if let Some(existing) = target.last() {
            let (source_dir, target_inode) = (self.ns.inode(source_id).is_dir(), self.ns.inode(existing));
            if target_inode.is_dir() != source_dir {
                return Err(FsError::io(format!(
                    "Source {} and destination {} must both be directories",
                    source.path, target.path
                )));
            }
            if !overwrite {
                return Err(FsError::exists(format!("rename destination {} already exists", target.path)));
            }
            if target_inode.is_dir() && !target_inode.children().is_empty() {
                return Err(FsError::io(format!(
                    "rename destination directory is not empty: {}",
                    target.path
                )));
            }
        }
        let Some(parent) = target.parent() else {
            return Err(FsError::not_found(format!("rename destination parent {} not found.", target.path)));
        };
        if !self.ns.inode(parent).is_dir() {
            return Err(FsError::new(
                ErrorKind::ParentNotDirectory,
                format!("rename destination parent {} is a file.", target.path),
            ));
        }
        self.rename_limits(&source, &target)?;
        let now = now_ms();
        if let Some(existing) = target.last() {
            let applied = self.log(EditOp::Delete { id: existing, mtime_ms: now })?;
            self.invalidate_removed(applied);
        }
        self.log(EditOp::Rename {
            id: source_id,
            new_parent: parent,
            new_name: target.last_name().to_string(),
            mtime_ms: now,
        })?;
        Ok(())
    }

    pub fn set_replication(&mut self, caller: &Caller, src: &str, replication: u32) -> FsResult<bool> {
        self.check_safemode(&format!("Cannot set replication for {src}"))?;
        let replication = self.verify_replication(src, replication, &caller.machine.to_string())?;
        let resolved = self.resolve(caller, src, DirOp::Write)?;
        self.path_access(caller, &resolved, FsAction::Write)?;
        match resolved.last() {
            Some(id) if self.ns.inode(id).is_file() => {
                self.log(EditOp::SetReplication { id, replication })?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn existing(&self, resolved: &ResolvedPath) -> FsResult<InodeId> {
        resolved.last().ok_or_else(|| FsError::no_such_file(&resolved.path))
    }

    pub fn set_permission(&mut self, caller: &Caller, src: &str, perm: u16) -> FsResult<()> {
        self.check_safemode(&format!("Cannot set permission for {src}"))?;
        let resolved = self.resolve(caller, src, DirOp::Write)?;
        let id = self.existing(&resolved)?;
        self.check(caller, &resolved, Access { owner: true, ..Access::default() })?;
        self.log(EditOp::SetPermission { id, perm: perm & 0o1777 })?;
        Ok(())
    }

    pub fn set_owner(
        &mut self,
        caller: &Caller,
        src: &str,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> FsResult<()> {
        self.check_safemode(&format!("Cannot set owner for {src}"))?;
        let resolved = self.resolve(caller, src, DirOp::Write)?;
        let id = self.existing(&resolved)?;
        self.check(caller, &resolved, Access { owner: true, ..Access::default() })?;
        if self.permissions() && !caller.is_superuser {
            if owner.is_some_and(|o| o != caller.user) {
                return Err(FsError::access(format!(
                    "User {} is not a super user (non-super user cannot change owner).",
                    caller.user
                )));
            }
            if let Some(group) = group.filter(|g| !caller.is_member(g)) {
                return Err(FsError::access(format!("User {} does not belong to {group}", caller.user)));
            }
        }
        if owner.is_none() && group.is_none() {
            return Ok(());
        }
        self.log(EditOp::SetOwner { id, owner: owner.map(String::from), group: group.map(String::from) })?;
        Ok(())
    }

    pub fn set_times(&mut self, caller: &Caller, src: &str, mtime: u64, atime: u64) -> FsResult<()> {
        self.check_safemode(&format!("Cannot set times {src}"))?;
        let resolved = self.resolve(caller, src, DirOp::Write)?;
        self.path_access(caller, &resolved, FsAction::Write)?;
        let id = resolved
            .last()
            .ok_or_else(|| FsError::not_found(format!("File/Directory {} does not exist.", resolved.path)))?;
        let as_time = |t: u64| (t != TIME_UNCHANGED).then_some(t as i64);
        let (mtime_ms, atime_ms) = (as_time(mtime), as_time(atime));
        if mtime_ms.is_none() && atime_ms.is_none() {
            return Ok(());
        }
        self.log(EditOp::SetTimes { id, mtime_ms, atime_ms })?;
        Ok(())
    }

    pub fn renew_lease(&mut self, client_name: &str) -> FsResult<()> {
        self.check_safemode(&format!("Cannot renew lease for {client_name}"))?;
        self.leases.renew(client_name, std::time::Instant::now());
        Ok(())
    }

    pub fn recover_lease(&mut self, caller: &Caller, src: &str, client_name: &str) -> FsResult<bool> {
        self.check_safemode(&format!("Cannot recover the lease of {src}"))?;
        let resolved = self.resolve(caller, src, DirOp::Write)?;
        self.path_access(caller, &resolved, FsAction::Write)?;
        let id = self.existing(&resolved)?;
        if !self.ns.inode(id).is_file() {
            return Err(path_not_file(src));
        }
        let Some(uc) = self.ns.under_construction(id).cloned() else { return Ok(true) };
        if self.leases.get(&uc.client_name).is_none() {
            return Err(FsError::new(
                ErrorKind::AlreadyBeingCreated,
                format!(
                    "Failed to RECOVER_LEASE {src} for {client_name} on {} because the file is under construction but no leases found.",
                    caller.machine
                ),
            ));
        }
        self.internal_release_lease(id, Some(client_name))
    }

    pub fn truncate(
        &mut self,
        caller: &Caller,
        src: &str,
        new_length: u64,
        client_name: &str,
    ) -> FsResult<bool> {
        let machine = caller.machine.to_string();
        self.check_safemode(&format!("Cannot truncate for {src}"))?;
        let resolved = self.resolve(caller, src, DirOp::Write)?;
        self.path_access(caller, &resolved, FsAction::Write)?;
        let id = self.existing(&resolved)?;
        if !self.ns.inode(id).is_file() {
            return Err(path_not_file(src));
        }
        self.recover_lease_for(LeaseOp::Truncate, id, &resolved.path, client_name, &machine)?;
        let old_length = self.file_length(id);
        if new_length > old_length {
            return Err(FsError::illegal_argument(format!(
                "Cannot truncate to a larger file size. Current size: {old_length}, truncate size: {new_length}."
            )));
        }
        if new_length == old_length {
            return Ok(true);
        }
        let mut kept = Vec::new();
        let mut position = 0u64;
        for block in self.ns.inode(id).blocks() {
            if position >= new_length {
                break;
            }
            let record = self.blocks.record(*block).expect("file block in the map");
            position += record.num_bytes;
            kept.push(record);
        }
        if position == new_length {
            let applied =
                self.log(EditOp::UpdateBlocks { file: id, blocks: kept, mtime_ms: Some(now_ms()) })?;
            self.invalidate_removed(applied);
            return Ok(true);
        }
        // Inside a block: the file stays open under the caller while a block recovery
        // (with a truncate block) cuts the replicas of that block; false tells the
        // client to wait for it (`-truncate -w` polls the length).
        let last = *kept.last().expect("new_length < old_length, so a block is kept");
        let last_block_length = last.num_bytes - (position - new_length);
        let applied = self.log(EditOp::Truncate {
            file: id,
            blocks: kept,
            last_block_length,
            client_name: client_name.to_string(),
            client_machine: machine,
            mtime_ms: now_ms(),
        })?;
        self.invalidate_removed(applied);
        let locations: Vec<(u32, u8)> = self
            .blocks
            .replicas(last.id)
            .into_iter()
            .filter(|r| r.state != ReplicaState::Corrupt && self.datanodes.is_live(r.node))
            .map(|r| (r.node, r.storage))
            .collect();
        self.blocks.set_expected_locations(
            last.id,
            locations
                .iter()
                .map(|(n, s)| Replica { node: *n, storage: *s, state: ReplicaState::Finalized })
                .collect(),
        );
        self.start_block_recovery(last.id, &locations, &resolved.path)?;
        Ok(false)
    }

    pub fn concat(&mut self, caller: &Caller, target: &str, sources: &[String]) -> FsResult<()> {
        self.check_safemode(&format!("Cannot concat {target}"))?;
        if sources.is_empty() {
            return Err(FsError::illegal_argument("concat: srcs cannot be empty"));
        }
        let resolved = self.resolve(caller, target, DirOp::Write)?;
        let target_id = resolved.last().ok_or_else(|| FsError::no_such_file(target))?;
        let target_inode = self.ns.inode(target_id);
        if !target_inode.is_file() {
            return Err(path_not_file(target));
        }
        if self.ns.under_construction(target_id).is_some() {
            return Err(FsError::illegal_argument(format!(
                "concat: target file {} is under construction",
                resolved.path
            )));
        }
        self.path_access(caller, &resolved, FsAction::Write)?;
        let (target_parent, target_blocksize) = (target_inode.parent, target_inode.blocksize());
        let mut ids = Vec::new();
        for src in sources {
            let source = self.resolve(caller, src, DirOp::Write)?;
            self.path_access(caller, &source, FsAction::Read)?;
            self.check(caller, &source, Access { parent: Some(FsAction::Write), ..Access::default() })?;
            let id = source.last().ok_or_else(|| FsError::no_such_file(src))?;
            let inode = self.ns.inode(id);
            if !inode.is_file() {
                return Err(path_not_file(src));
            }
            if inode.parent != target_parent {
                return Err(FsError::illegal_argument(format!(
                    "Source file {src} is not in the same directory with the target {}",
                    resolved.path
                )));
            }
            if id == target_id {
                return Err(FsError::illegal_argument(format!(
                    "concat: the src file {src} is the same with the target file {}",
                    resolved.path
                )));
            }
            if self.ns.under_construction(id).is_some() || inode.blocks().is_empty() {
                return Err(FsError::illegal_argument(format!(
                    "concat: source file {src} is invalid or empty or underConstruction"
                )));
            }
            if inode.blocksize() > target_blocksize {
                return Err(FsError::illegal_argument(format!(
                    "concat: source file {src} has preferred block size {} which is greater than the target file's preferred block size {target_blocksize}",
                    inode.blocksize()
                )));
            }
            if ids.contains(&id) {
                return Err(FsError::illegal_argument(
                    "concat: at least two of the source files are the same",
                ));
            }
            ids.push(id);
        }
        self.log(EditOp::Concat { target: target_id, sources: ids, mtime_ms: now_ms() })?;
        Ok(())
    }

    pub fn update_block_for_pipeline(
        &mut self,
        block: &ExtendedBlockProto,
        client_name: &str,
    ) -> FsResult<LocatedBlockProto> {
        self.check_safemode(&format!(
            "Cannot get a new generation stamp and an access token for block blk_{}",
            block.block_id
        ))?;
        self.check_uc_block(block, client_name)?;
        let gen_stamp = self.blocks.allocate_gen_stamp();
        self.log(EditOp::SetGenStamp { gen_stamp })?;
        let mut b = block.clone();
        b.generation_stamp = gen_stamp;
        b.pool_id = self.info.block_pool_id.clone();
        Ok(self.located_block(b, u64::MAX, &[], false))
    }

    /// FSNamesystem.checkUCBlock: the block is being written and `client_name` holds it.
    fn check_uc_block(&self, block: &ExtendedBlockProto, client_name: &str) -> FsResult<InodeId> {
        let id = BlockId(block.block_id);
        let entry = self.blocks.get(id).ok_or_else(|| {
            FsError::io(format!("blk_{}_{} does not exist.", block.block_id, block.generation_stamp))
        })?;
        if entry.state != BlockState::UnderConstruction {
            return Err(FsError::io(format!(
                "Unexpected BlockUCState: blk_{}_{} is {:?} but not UNDER_CONSTRUCTION",
                block.block_id, block.generation_stamp, entry.state
            )));
        }
        let file = entry.file;
        match self.ns.under_construction(file) {
            Some(uc) if uc.client_name == client_name => Ok(file),
            Some(uc) => Err(FsError::lease(format!(
                "Client (={client_name}) is not the lease owner (={}: {} (inode {file})",
                uc.client_name,
                self.ns.path_of(file)
            ))),
            None => Err(FsError::io(format!("{} is not under construction", self.ns.path_of(file)))),
        }
    }

    pub fn update_pipeline(
        &mut self,
        client_name: &str,
        old_block: &ExtendedBlockProto,
        new_block: &ExtendedBlockProto,
        new_nodes: &[DatanodeIdProto],
        storage_ids: &[String],
    ) -> FsResult<()> {
        self.check_safemode("Pipeline not updated")?;
        let file = self.check_uc_block(old_block, client_name)?;
        let id = BlockId(old_block.block_id);
        if new_block.block_id != old_block.block_id {
            return Err(FsError::io(format!(
                "Update blk_{} but the new block blk_{} is a different block",
                old_block.block_id, new_block.block_id
            )));
        }
        if self.ns.inode(file).blocks().last() != Some(&id) {
            return Err(FsError::io(format!(
                "Update blk_{} is not the last block of its file",
                old_block.block_id
            )));
        }
        let entry = self.blocks.get(id).expect("checked");
        if new_block.generation_stamp <= entry.gen_stamp {
            return Err(FsError::io(format!(
                "Update blk_{}_{} but the new block blk_{}_{} does not have a larger generation stamp than the last block blk_{}_{}",
                old_block.block_id, old_block.generation_stamp, new_block.block_id, new_block.generation_stamp,
                id.0, entry.gen_stamp
            )));
        }
        let new_length = new_block.num_bytes.unwrap_or(0);
        if new_length < entry.num_bytes {
            return Err(FsError::io(format!(
                "Update blk_{} (size={}) to a smaller size block blk_{} (size={new_length})",
                old_block.block_id,
                old_block.num_bytes.unwrap_or(0),
                new_block.block_id
            )));
        }
        let mut records: Vec<BlockRecord> =
            self.ns.inode(file).blocks().iter().filter_map(|b| self.blocks.record(*b)).collect();
        if let Some(last) = records.last_mut() {
            last.gen_stamp = new_block.generation_stamp;
            last.num_bytes = new_length;
        }
        self.log(EditOp::UpdateBlocks { file, blocks: records, mtime_ms: None })?;
        let mut expected = Vec::new();
        for (i, node) in new_nodes.iter().enumerate() {
            let Some(index) = self.datanodes.find(node) else { continue };
            let storage = storage_ids
                .get(i)
                .and_then(|s| self.datanodes.node(index).storages.iter().position(|x| &x.uuid == s))
                .map(|s| s as u8)
                .unwrap_or_else(|| self.datanodes.node(index).preferred_storage());
            expected.push(Replica { node: index, storage, state: ReplicaState::BeingWritten });
        }
        // Replicas outside the new pipeline are stale (older stamp).
        for replica in self.blocks.replicas(id) {
            if !expected.iter().any(|e| e.node == replica.node) {
                self.blocks.remove_replica(id, replica.node);
            }
        }
        self.blocks.set_expected_locations(id, expected);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn get_additional_datanode(
        &self,
        caller: &Caller,
        src: &str,
        block: &ExtendedBlockProto,
        existings: &[DatanodeInfoProto],
        excludes: &[DatanodeInfoProto],
        additional: u32,
        client_name: &str,
        file_id: Option<u64>,
    ) -> FsResult<LocatedBlockProto> {
        let file = self.file_for(caller, src, file_id)?;
        let id = self.check_lease(src, file, client_name)?;
        let chosen: Vec<u32> = existings.iter().filter_map(|d| self.datanodes.find(&d.id)).collect();
        let request = PlacementRequest {
            wanted: additional as usize,
            writer: self.datanodes.on_host(caller.machine),
            chosen: chosen.clone(),
            excluded: excludes.iter().filter_map(|d| self.datanodes.find(&d.id)).collect(),
            favored: Vec::new(),
            blocksize: self.ns.inode(id).blocksize(),
        };
        let added = choose_targets(&self.datanodes, &request, &mut rand::rng());
        let nodes: Vec<(u32, u8)> = chosen
            .iter()
            .chain(added.iter())
            .map(|n| {
                let storage = self
                    .blocks
                    .expected_locations(BlockId(block.block_id))
                    .iter()
                    .find(|r| r.node == *n)
                    .map(|r| r.storage)
                    .unwrap_or_else(|| self.datanodes.node(*n).preferred_storage());
                (*n, storage)
            })
            .collect();
        Ok(self.located_block(block.clone(), u64::MAX, &nodes, false))
    }

    /// A client or datanode reports replicas it found corrupt.
    pub fn report_bad_blocks(&mut self, blocks: &[LocatedBlockProto]) {
        for located in blocks {
            let id = BlockId(located.b.block_id);
            for loc in &located.locs {
                let Some(node) = self.datanodes.find(&loc.id) else { continue };
                if let Some(replica) = self.blocks.replica_on(id, node) {
                    tracing::info!(block = %id, datanode = %self.datanodes.node(node).xfer_addr(), "replica reported corrupt");
                    self.blocks.set_replica(id, Replica { state: ReplicaState::Corrupt, ..replica });
                    self.redundancy.needed.insert(id);
                }
            }
        }
    }

    pub fn set_safemode(&mut self, caller: &Caller, action: i32) -> FsResult<bool> {
        const LEAVE: i32 = 1;
        const ENTER: i32 = 2;
        const GET: i32 = 3;
        const FORCE_EXIT: i32 = 4;
        if action != GET {
            crate::namespace::Namespace::check_superuser(caller, self.permissions())?;
        }
        match action {
            LEAVE | FORCE_EXIT => self.leave_safemode("an administrator left it"),
            ENTER => self.enter_safemode(),
            GET => {}
            other => return Err(FsError::illegal_argument(format!("unknown safe mode action {other}"))),
        }
        Ok(self.safemode.state != SafeModeState::Off)
    }
}
