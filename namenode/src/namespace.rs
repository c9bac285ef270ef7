//! The inode tree: directories and files with HDFS attributes, path resolution
//! (INodesInPath), and the permission algorithm of Java's FSPermissionChecker. No I/O and
//! no journaling here: callers decide and log, this module applies.
//!
//! Memory: an inode is one boxed 80-byte struct held in an [`IdTable`] keyed by inode id;
//! names up to 22 bytes sit inline; owners and groups are 16-bit indexes into a string
//! table; a directory's children are a vector of (name key, id) sorted by child name, so a
//! lookup binary-searches that one vector without reading the children's inodes; the
//! rarely present under-construction state lives in a side table.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::error::{ErrorKind, FsError, FsResult};
use crate::ids::{BlockId, InodeId, FIRST_INODE_ID, ROOT_INODE_ID};
use crate::idtable::IdTable;
use crate::name::Name;
use crate::permission::{inode_mode_string, Caller, FsAction, STICKY_BIT};

/// Distinct owner and group names the string table holds (16-bit indexes).
pub const STRING_TABLE_SIZE_MAX: usize = u16::MAX as usize;

/// Longest path accepted (HDFS MAX_PATH_LENGTH).
pub const PATH_LENGTH_MAX: usize = 8000;
/// Deepest path accepted (HDFS MAX_PATH_DEPTH).
pub const PATH_DEPTH_MAX: usize = 1000;

#[derive(Debug)]
pub struct Inode {
    pub parent: InodeId,
    pub mtime_ms: i64,
    /// Access time; HDFS keeps none for directories (always 0).
    pub atime_ms: i64,
    pub name: Name,
    pub owner: u16,
    pub group: u16,
    pub perm: u16,
    /// Files only; 0 for directories.
    pub replication: u16,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    File { blocks: Box<[BlockId]>, blocksize: u64 },
    Directory(Box<Directory>),
}

#[derive(Debug, Default)]
pub struct Directory {
    /// Children, sorted by child name bytes.
    pub children: Vec<Child>,
}

/// A directory entry: the child's id and a key made from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    pub key: NameKey,
    pub id: InodeId,
}

/// The first 7 bytes of a name (zero-padded) followed by its length capped at 8, read as a
/// big-endian number. Keys order as their names do (a tie only between names of 8 bytes
/// or more that share 7 bytes), and equal keys of names shorter than 8 bytes mean equal
/// names: most lookups compare keys only, touching no child inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NameKey(u64);

/// Name bytes a key holds; one more byte holds the length.
const NAME_KEY_BYTES: usize = 7;

impl NameKey {
    pub fn of(name: &[u8]) -> NameKey {
        let mut bytes = [0u8; NAME_KEY_BYTES + 1];
        let held = name.len().min(NAME_KEY_BYTES);
        bytes[..held].copy_from_slice(&name[..held]);
        bytes[NAME_KEY_BYTES] = name.len().min(NAME_KEY_BYTES + 1) as u8;
        NameKey(u64::from_be_bytes(bytes))
    }

    /// Does the key hold the whole name?
    fn is_whole_name(self) -> bool {
        (self.0 & 0xff) as usize <= NAME_KEY_BYTES
    }
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        matches!(self.body, Body::Directory(_))
    }

    pub fn is_file(&self) -> bool {
        matches!(self.body, Body::File { .. })
    }

    pub fn blocks(&self) -> &[BlockId] {
        match &self.body {
            Body::File { blocks, .. } => blocks,
            Body::Directory(_) => &[],
        }
    }

    pub fn blocksize(&self) -> u64 {
        match &self.body {
            Body::File { blocksize, .. } => *blocksize,
            Body::Directory(_) => 0,
        }
    }

    pub fn children(&self) -> &[Child] {
        match &self.body {
            Body::Directory(dir) => &dir.children,
            Body::File { .. } => &[],
        }
    }

    pub fn set_blocks(&mut self, new_blocks: Vec<BlockId>) {
        if let Body::File { blocks, .. } = &mut self.body {
            *blocks = new_blocks.into_boxed_slice();
        }
    }
}

/// A file open for writing: who holds its lease (HDFS FileUnderConstructionFeature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderConstruction {
    pub client_name: String,
    pub client_machine: String,
    /// A truncate in progress: the last block is being cut to this many bytes by a
    /// block recovery (the file is open until it commits).
    pub truncate_to: Option<u64>,
}

/// Interned owner and group names.
#[derive(Debug, Default)]
pub struct StringTable {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u16>,
}

impl StringTable {
    pub fn intern(&mut self, name: &str) -> FsResult<u16> {
        if let Some(id) = self.index.get(name) {
            return Ok(*id);
        }
        if self.names.len() >= STRING_TABLE_SIZE_MAX {
            return Err(FsError::io(format!(
                "too many distinct owner and group names (limit {STRING_TABLE_SIZE_MAX})"
            )));
        }
        let id = self.names.len() as u16;
        self.names.push(name.into());
        self.index.insert(name.into(), id);
        Ok(id)
    }

    pub fn get(&self, id: u16) -> &str {
        self.names.get(usize::from(id)).map(|s| &**s).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|s| &**s)
    }
}

/// A path resolved against the tree (Java's INodesInPath): `inodes[0]` is the root,
/// `inodes[i]` the inode of `components[i - 1]`, `None` from the first missing one on.
#[derive(Debug, Clone)]
pub struct ResolvedPath {
    pub path: String,
    pub components: Vec<String>,
    pub inodes: Vec<Option<InodeId>>,
}

impl ResolvedPath {
    pub fn last(&self) -> Option<InodeId> {
        *self.inodes.last().expect("root is always present")
    }

    pub fn parent(&self) -> Option<InodeId> {
        if self.inodes.len() < 2 {
            None
        } else {
            self.inodes[self.inodes.len() - 2]
        }
    }

    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    pub fn last_name(&self) -> &str {
        self.components.last().map(String::as_str).unwrap_or("")
    }

    /// `/c1/.../ci` (Java getPath(components, 0, i)); `/` for 0.
    pub fn prefix(&self, i: usize) -> String {
        let parts: Vec<&str> =
            self.components[..i.min(self.components.len())].iter().map(String::as_str).collect();
        ringfs_common::path::join(&parts)
    }

    /// Index of the deepest existing inode among the ancestors of the last component.
    pub fn ancestor_index(&self) -> usize {
        let mut index = self.inodes.len().saturating_sub(2);
        while index > 0 && self.inodes[index].is_none() {
            index -= 1;
        }
        index
    }

    /// Index of the first missing component's inode slot, if any.
    pub fn first_missing(&self) -> Option<usize> {
        self.inodes.iter().position(Option::is_none)
    }
}

/// How a path will be used (Java's DirOp): creating ops see ParentNotDirectoryException,
/// others an AccessControlException, when a path goes through a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirOp {
    Read,
    Write,
    Create,
}

/// What a permission check demands (the arguments of FSPermissionChecker.checkPermission).
#[derive(Debug, Clone, Copy, Default)]
pub struct Access {
    pub owner: bool,
    pub ancestor: Option<FsAction>,
    pub parent: Option<FsAction>,
    pub access: Option<FsAction>,
    pub sub_access: Option<FsAction>,
    pub ignore_empty_dir: bool,
}

/// Sizes the content summary and the quota usage report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentCounts {
    pub length: u64,
    pub files: u64,
    pub directories: u64,
    pub space_consumed: u64,
}

/// What a subtree removal took away.
#[derive(Debug, Default)]
pub struct Removed {
    pub inodes: Vec<InodeId>,
    pub files: Vec<InodeId>,
    pub blocks: Vec<BlockId>,
}

#[derive(Debug)]
pub struct Namespace {
    inodes: IdTable<Box<Inode>>,
    pub strings: StringTable,
    under_construction: HashMap<InodeId, UnderConstruction>,
    next_inode_id: u64,
    file_count: u64,
    directory_count: u64,
    pub max_component_length: usize,
    pub max_directory_items: usize,
}

/// Java's default limits (dfs.namenode.fs-limits.*).
pub const MAX_COMPONENT_LENGTH_DEFAULT: usize = 255;
pub const MAX_DIRECTORY_ITEMS_DEFAULT: usize = 1024 * 1024;

impl Namespace {
    /// A namespace holding only the root directory.
    pub fn new(root_owner: &str, root_group: &str, root_perm: u16, mtime_ms: i64) -> Namespace {
        let mut ns = Namespace {
            inodes: IdTable::new(),
            strings: StringTable::default(),
            under_construction: HashMap::new(),
            next_inode_id: FIRST_INODE_ID,
            file_count: 0,
            directory_count: 0,
            max_component_length: MAX_COMPONENT_LENGTH_DEFAULT,
            max_directory_items: MAX_DIRECTORY_ITEMS_DEFAULT,
        };
        let owner = ns.strings.intern(root_owner).expect("empty table");
        let group = ns.strings.intern(root_group).expect("empty table");
        let root = Inode {
            parent: ROOT_INODE_ID,
            mtime_ms,
            atime_ms: 0,
            name: Name::new(""),
            owner,
            group,
            perm: root_perm,
            replication: 0,
            body: Body::Directory(Box::default()),
        };
        ns.inodes.insert(ROOT_INODE_ID.0, Box::new(root));
        ns.directory_count = 1;
        ns
    }

    pub fn get(&self, id: InodeId) -> Option<&Inode> {
        self.inodes.get(id.0).map(|b| &**b)
    }

    pub fn get_mut(&mut self, id: InodeId) -> Option<&mut Inode> {
        self.inodes.get_mut(id.0).map(|b| &mut **b)
    }

    pub fn inode(&self, id: InodeId) -> &Inode {
        self.get(id).expect("inode referenced by the tree exists")
    }

    pub fn root(&self) -> &Inode {
        self.inode(ROOT_INODE_ID)
    }

    /// Makes room for `inodes` more inodes (image loading).
    pub fn reserve(&mut self, inodes: usize) {
        self.inodes.reserve_exact(inodes);
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    pub fn file_count(&self) -> u64 {
        self.file_count
    }

    pub fn directory_count(&self) -> u64 {
        self.directory_count
    }

    pub fn next_inode_id(&self) -> u64 {
        self.next_inode_id
    }

    /// Reserves the next inode id.
    pub fn allocate_inode_id(&mut self) -> InodeId {
        let id = InodeId(self.next_inode_id);
        self.next_inode_id += 1;
        id
    }

    /// Makes sure ids handed out from now on are above `used` (replay, image load).
    pub fn note_inode_id(&mut self, used: InodeId) {
        // Saturating: a damaged image may name u64::MAX; loading must not overflow.
        self.next_inode_id = self.next_inode_id.max(used.0.saturating_add(1));
    }

    pub fn owner_name(&self, inode: &Inode) -> &str {
        self.strings.get(inode.owner)
    }

    pub fn group_name(&self, inode: &Inode) -> &str {
        self.strings.get(inode.group)
    }

    pub fn under_construction(&self, id: InodeId) -> Option<&UnderConstruction> {
        self.under_construction.get(&id)
    }

    pub fn under_construction_files(&self) -> impl Iterator<Item = (InodeId, &UnderConstruction)> {
        self.under_construction.iter().map(|(id, uc)| (*id, uc))
    }

    pub fn set_under_construction(&mut self, id: InodeId, uc: Option<UnderConstruction>) {
        match uc {
            Some(uc) => {
                self.under_construction.insert(id, uc);
            }
            None => {
                self.under_construction.remove(&id);
            }
        }
    }

    /// Every inode in id order (image writing, audits).
    pub fn iter(&self) -> impl Iterator<Item = (InodeId, &Inode)> {
        self.inodes.iter().map(|(id, inode)| (InodeId(id), &**inode))
    }

    /// Heap bytes the namespace holds: the inode index, every inode box, long names,
    /// block lists, children vectors, the string table and open-file records (allocator
    /// rounding not included).
    pub fn heap_bytes(&self) -> usize {
        let mut total = self.inodes.heap_bytes();
        for (_, inode) in self.inodes.iter() {
            total += std::mem::size_of::<Inode>() + inode.name.heap_bytes();
            total += match &inode.body {
                Body::File { blocks, .. } => std::mem::size_of_val(&**blocks),
                Body::Directory(dir) => {
                    std::mem::size_of::<Directory>() + dir.children.capacity() * std::mem::size_of::<Child>()
                }
            };
        }
        total += self.strings.iter().map(|s| 2 * s.len() + 40).sum::<usize>();
        total += self.under_construction.capacity() * std::mem::size_of::<(InodeId, UnderConstruction)>();
        total
    }

    // ---------------------------------------------------------------- lookups

    /// Finds a child by name: binary search over the sorted children.
    pub fn lookup_child(&self, dir: InodeId, name: &[u8]) -> Option<InodeId> {
        let children = self.get(dir)?.children();
        self.child_position(children, name).ok().map(|i| children[i].id)
    }

    /// Keys decide every comparison except a tie between long names, which reads the
    /// child's name.
    fn child_position(&self, children: &[Child], name: &[u8]) -> Result<usize, usize> {
        let key = NameKey::of(name);
        children.binary_search_by(|child| match child.key.cmp(&key) {
            Ordering::Equal if !key.is_whole_name() => self.inode(child.id).name.cmp_bytes(name),
            order => order,
        })
    }

    /// Index of the first child whose name sorts strictly after `start_after`.
    pub fn children_after(&self, dir: InodeId, start_after: &[u8]) -> usize {
        let children = self.inode(dir).children();
        if start_after.is_empty() {
            return 0;
        }
        match self.child_position(children, start_after) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// Splits and validates a client path (absolute, no `.`/`..`, length limits).
    pub fn parse_path(&self, path: &str) -> FsResult<Vec<String>> {
        if path.len() > PATH_LENGTH_MAX {
            return Err(FsError::new(
                ErrorKind::InvalidPath,
                format!("Invalid path name Path too long: {} characters", path.len()),
            ));
        }
        let parts = ringfs_common::path::components(path)?;
        if parts.len() > PATH_DEPTH_MAX {
            return Err(FsError::new(
                ErrorKind::InvalidPath,
                format!("Invalid path name Path too deep: {path}"),
            ));
        }
        Ok(parts.into_iter().map(String::from).collect())
    }

    /// Resolves `path` without any check (INodesInPath.resolve).
    pub fn resolve_unchecked(&self, path: &str) -> FsResult<ResolvedPath> {
        let components = self.parse_path(path)?;
        let mut inodes = Vec::with_capacity(components.len() + 1);
        inodes.push(Some(ROOT_INODE_ID));
        let mut current = Some(ROOT_INODE_ID);
        for component in &components {
            current = match current {
                Some(id) if self.inode(id).is_dir() => self.lookup_child(id, component.as_bytes()),
                _ => None,
            };
            inodes.push(current);
        }
        let path = ringfs_common::path::join(&components.iter().map(String::as_str).collect::<Vec<_>>());
        Ok(ResolvedPath { path, components, inodes })
    }

    /// Resolves a path and checks its ancestors as Java's FSDirectory.resolvePath does:
    /// every existing ancestor must be a directory (and, with permissions on, searchable).
    pub fn resolve(
        &self,
        caller: &Caller,
        path: &str,
        dir_op: DirOp,
        permissions_enabled: bool,
    ) -> FsResult<ResolvedPath> {
        let resolved = self.resolve_unchecked(path)?;
        let check_exec = permissions_enabled && !caller.is_superuser;
        let last = resolved.ancestor_index();
        for i in 0..=last {
            let Some(id) = resolved.inodes[i] else { continue };
            let inode = self.inode(id);
            if !inode.is_dir() {
                let message = format!("{} (is not a directory)", resolved.prefix(i));
                return Err(if dir_op == DirOp::Create {
                    FsError::new(ErrorKind::ParentNotDirectory, message)
                } else {
                    FsError::access(message)
                });
            }
            if check_exec {
                self.check_one(caller, &resolved, i, FsAction::Execute)?;
            }
        }
        Ok(resolved)
    }

    // ----------------------------------------------------------- permissions

    fn access_denied(&self, caller: &Caller, inode: &Inode, path: &str, access: FsAction) -> FsError {
        FsError::access(format!(
            "Permission denied: user={}, access={}, inode=\"{}\":{}:{}:{}",
            caller.user,
            access.java_name(),
            path,
            self.owner_name(inode),
            self.group_name(inode),
            inode_mode_string(inode.is_dir(), inode.perm)
        ))
    }

    fn permits(&self, caller: &Caller, inode: &Inode, access: FsAction) -> bool {
        caller.has_permission(self.owner_name(inode), self.group_name(inode), inode.perm, access)
    }

    fn check_one(
        &self,
        caller: &Caller,
        resolved: &ResolvedPath,
        i: usize,
        access: FsAction,
    ) -> FsResult<()> {
        let Some(id) = resolved.inodes[i] else { return Ok(()) };
        let inode = self.inode(id);
        if self.permits(caller, inode, access) {
            Ok(())
        } else {
            Err(self.access_denied(caller, inode, &resolved.prefix(i), access))
        }
    }

    /// FSPermissionChecker.checkPermission: traverse, sticky bit, ancestor, parent, the
    /// inode itself, the subtree, ownership. Superusers pass everything.
    pub fn check_access(
        &self,
        caller: &Caller,
        resolved: &ResolvedPath,
        check: Access,
        permissions_enabled: bool,
    ) -> FsResult<()> {
        if !permissions_enabled || caller.is_superuser {
            return Ok(());
        }
        let ancestor = resolved.ancestor_index();
        for i in 0..=ancestor {
            self.check_one(caller, resolved, i, FsAction::Execute)?;
        }
        let length = resolved.inodes.len();
        let last = resolved.last();
        if let (Some(parent_access), Some(last_id)) = (check.parent, last) {
            if parent_access.implies(FsAction::Write) && length > 1 {
                self.check_sticky(caller, resolved, length - 2, last_id)?;
            }
        }
        if let Some(access) = check.ancestor {
            if length > 1 {
                self.check_one(caller, resolved, ancestor, access)?;
            }
        }
        if let Some(access) = check.parent {
            if length > 1 {
                self.check_one(caller, resolved, length - 2, access)?;
            }
        }
        if let Some(access) = check.access {
            self.check_one(caller, resolved, length - 1, access)?;
        }
        if let (Some(access), Some(last_id)) = (check.sub_access, last) {
            self.check_sub_access(caller, last_id, access, check.ignore_empty_dir)?;
        }
        if check.owner {
            if let Some(last_id) = last {
                let inode = self.inode(last_id);
                if self.owner_name(inode) != caller.user {
                    return Err(FsError::access(format!(
                        "Permission denied. user={} is not the owner of inode={}",
                        caller.user, resolved.path
                    )));
                }
            }
        }
        Ok(())
    }

    /// Only the superuser (or anyone with permissions off) passes.
    pub fn check_superuser(caller: &Caller, permissions_enabled: bool) -> FsResult<()> {
        if permissions_enabled && !caller.is_superuser {
            return Err(FsError::access(format!(
                "Access denied for user {}. Superuser privilege is required",
                caller.user
            )));
        }
        Ok(())
    }

    fn sticky_violated(&self, caller: &Caller, parent: &Inode, child: &Inode) -> bool {
        self.owner_name(parent) != caller.user && self.owner_name(child) != caller.user
    }

    fn sticky_error(
        &self,
        caller: &Caller,
        child_path: &str,
        child: &Inode,
        parent_path: &str,
        parent: &Inode,
    ) -> FsError {
        FsError::access(format!(
            "Permission denied by sticky bit: user={}, path=\"{}\":{}:{}:{}, parent=\"{}\":{}:{}:{}",
            caller.user,
            child_path,
            self.owner_name(child),
            self.group_name(child),
            inode_mode_string(child.is_dir(), child.perm),
            parent_path,
            self.owner_name(parent),
            self.group_name(parent),
            inode_mode_string(parent.is_dir(), parent.perm),
        ))
    }

    fn check_sticky(
        &self,
        caller: &Caller,
        resolved: &ResolvedPath,
        parent_index: usize,
        child: InodeId,
    ) -> FsResult<()> {
        let Some(parent_id) = resolved.inodes[parent_index] else { return Ok(()) };
        let parent = self.inode(parent_id);
        if parent.perm & STICKY_BIT == 0 {
            return Ok(());
        }
        let child = self.inode(child);
        if !self.sticky_violated(caller, parent, child) {
            return Ok(());
        }
        Err(self.sticky_error(
            caller,
            &resolved.prefix(parent_index + 1),
            child,
            &resolved.prefix(parent_index),
            parent,
        ))
    }

    fn check_sub_access(
        &self,
        caller: &Caller,
        root: InodeId,
        access: FsAction,
        ignore_empty: bool,
    ) -> FsResult<()> {
        let mut stack = vec![root];
        while let Some(dir_id) = stack.pop() {
            let dir = self.inode(dir_id);
            if !dir.is_dir() {
                continue;
            }
            let children = dir.children();
            if !(children.is_empty() && ignore_empty) {
                if !self.permits(caller, dir, access) {
                    return Err(self.access_denied(caller, dir, &self.path_of(dir_id), access));
                }
                if dir.perm & STICKY_BIT != 0 {
                    for entry in children {
                        let child = self.inode(entry.id);
                        if self.sticky_violated(caller, dir, child) {
                            return Err(self.sticky_error(
                                caller,
                                &self.path_of(entry.id),
                                child,
                                &self.path_of(dir_id),
                                dir,
                            ));
                        }
                    }
                }
            }
            stack.extend(children.iter().map(|c| c.id).filter(|c| self.inode(*c).is_dir()));
        }
        Ok(())
    }

    // ------------------------------------------------------------ structure

    /// The absolute path of an inode.
    pub fn path_of(&self, id: InodeId) -> String {
        let mut names = Vec::new();
        let mut current = id;
        while current != ROOT_INODE_ID {
            let Some(inode) = self.get(current) else { break };
            names.push(inode.name.as_str());
            current = inode.parent;
            if names.len() > PATH_DEPTH_MAX {
                break;
            }
        }
        names.reverse();
        ringfs_common::path::join(&names)
    }

    /// Is `ancestor` on the parent chain of `id` (or `id` itself)?
    pub fn is_ancestor(&self, ancestor: InodeId, id: InodeId) -> bool {
        let mut current = id;
        for _ in 0..=PATH_DEPTH_MAX {
            if current == ancestor {
                return true;
            }
            if current == ROOT_INODE_ID {
                return false;
            }
            match self.get(current) {
                Some(inode) => current = inode.parent,
                None => return false,
            }
        }
        false
    }

    /// Checks a new child name against HDFS's component limits.
    pub fn validate_child_name(&self, parent_path: &str, name: &str) -> FsResult<()> {
        if name.len() > self.max_component_length {
            return Err(FsError::new(
                ErrorKind::PathComponentTooLong,
                format!(
                    "The maximum path component name limit of {name} in directory {parent_path} is exceeded: limit={} length={}",
                    self.max_component_length,
                    name.len()
                ),
            ));
        }
        Ok(())
    }

    /// Checks the directory can take one more child.
    pub fn validate_directory_items(&self, dir: InodeId, dir_path: &str) -> FsResult<()> {
        let count = self.inode(dir).children().len();
        if count >= self.max_directory_items {
            return Err(FsError::new(
                ErrorKind::MaxDirectoryItemsExceeded,
                format!(
                    "The directory item limit of {dir_path} is exceeded: limit={} items={count}",
                    self.max_directory_items
                ),
            ));
        }
        Ok(())
    }

    /// Links a new inode under `parent` (which must be a directory without that name).
    pub fn insert(&mut self, id: InodeId, inode: Inode) -> FsResult<()> {
        let parent = inode.parent;
        let key = NameKey::of(inode.name.as_bytes());
        let name = inode.name.as_bytes().to_vec();
        let is_dir = inode.is_dir();
        let position = {
            let parent_inode = self
                .get(parent)
                .ok_or_else(|| FsError::io(format!("parent inode {parent} does not exist")))?;
            if !parent_inode.is_dir() {
                return Err(FsError::io(format!("parent inode {parent} is not a directory")));
            }
            match self.child_position(parent_inode.children(), &name) {
                Ok(_) => {
                    return Err(FsError::exists(format!(
                        "{} already exists",
                        self.child_path(parent, &String::from_utf8_lossy(&name))
                    )))
                }
                Err(position) => position,
            }
        };
        if self.inodes.contains(id.0) {
            return Err(FsError::io(format!("inode id {id} is already in use")));
        }
        self.inodes.insert(id.0, Box::new(inode));
        if let Some(Body::Directory(dir)) = self.get_mut(parent).map(|p| &mut p.body) {
            dir.children.insert(position, Child { key, id });
        }
        self.note_inode_id(id);
        if is_dir {
            self.directory_count += 1;
        } else {
            self.file_count += 1;
        }
        Ok(())
    }

    fn child_path(&self, parent: InodeId, name: &str) -> String {
        let parent_path = self.path_of(parent);
        if parent_path == "/" {
            format!("/{name}")
        } else {
            format!("{parent_path}/{name}")
        }
    }

    fn unlink(&mut self, id: InodeId) {
        let (parent, name) = {
            let inode = self.inode(id);
            (inode.parent, inode.name.as_bytes().to_vec())
        };
        let position = self.child_position(self.inode(parent).children(), &name);
        if let (Ok(position), Some(Body::Directory(dir))) =
            (position, self.get_mut(parent).map(|p| &mut p.body))
        {
            dir.children.remove(position);
        }
    }

    /// Moves `id` under `new_parent` with `new_name` (the target name must be free).
    pub fn move_inode(&mut self, id: InodeId, new_parent: InodeId, new_name: &str) -> FsResult<()> {
        if id == ROOT_INODE_ID {
            return Err(FsError::io("the root cannot be moved"));
        }
        let target_parent =
            self.get(new_parent).ok_or_else(|| FsError::io(format!("inode {new_parent} does not exist")))?;
        if !target_parent.is_dir() {
            return Err(FsError::io(format!("inode {new_parent} is not a directory")));
        }
        if self.is_ancestor(id, new_parent) {
            return Err(FsError::io("cannot move a directory under itself"));
        }
        let position = match self.child_position(target_parent.children(), new_name.as_bytes()) {
            Ok(_) => {
                return Err(FsError::exists(format!(
                    "{} already exists",
                    self.child_path(new_parent, new_name)
                )))
            }
            Err(position) => position,
        };
        self.unlink(id);
        // The position may have shifted if the source was in the same directory.
        let position = if self.inode(id).parent == new_parent {
            match self.child_position(self.inode(new_parent).children(), new_name.as_bytes()) {
                Ok(_) => unreachable!("name checked free"),
                Err(p) => p,
            }
        } else {
            position
        };
        {
            let inode = self.get_mut(id).expect("exists");
            inode.parent = new_parent;
            inode.name = Name::new(new_name);
        }
        let key = NameKey::of(new_name.as_bytes());
        if let Some(Body::Directory(dir)) = self.get_mut(new_parent).map(|p| &mut p.body) {
            dir.children.insert(position, Child { key, id });
        }
        Ok(())
    }

    /// Removes `id` and everything under it.
    pub fn remove_subtree(&mut self, id: InodeId) -> FsResult<Removed> {
        if id == ROOT_INODE_ID {
            return Err(FsError::io("the root cannot be removed"));
        }
        if self.get(id).is_none() {
            return Err(FsError::io(format!("inode {id} does not exist")));
        }
        self.unlink(id);
        let mut removed = Removed::default();
        let mut stack = vec![id];
        while let Some(current) = stack.pop() {
            let Some(inode) = self.inodes.remove(current.0) else { continue };
            removed.inodes.push(current);
            match inode.body {
                Body::Directory(dir) => {
                    self.directory_count -= 1;
                    stack.extend(dir.children.iter().map(|c| c.id));
                }
                Body::File { blocks, .. } => {
                    self.file_count -= 1;
                    removed.files.push(current);
                    removed.blocks.extend(blocks.iter().copied());
                    self.under_construction.remove(&current);
                }
            }
        }
        Ok(removed)
    }

    /// Sizes of a subtree; `block_length` gives the bytes of each block.
    pub fn content_counts(&self, id: InodeId, block_length: impl Fn(BlockId) -> u64) -> ContentCounts {
        let mut counts = ContentCounts::default();
        let mut stack = vec![id];
        while let Some(current) = stack.pop() {
            let inode = self.inode(current);
            match &inode.body {
                Body::Directory(dir) => {
                    counts.directories += 1;
                    stack.extend(dir.children.iter().map(|c| c.id));
                }
                Body::File { blocks, .. } => {
                    counts.files += 1;
                    let length: u64 = blocks.iter().map(|b| block_length(*b)).sum();
                    counts.length += length;
                    counts.space_consumed += length * u64::from(inode.replication);
                }
            }
        }
        counts
    }

    /// Walks the tree parent-first (for the image), calling `visit` for every inode.
    pub fn walk_preorder(&self, mut visit: impl FnMut(InodeId, &Inode)) {
        let mut stack = vec![ROOT_INODE_ID];
        while let Some(current) = stack.pop() {
            let inode = self.inode(current);
            visit(current, inode);
            // Reverse so children are visited in name order.
            stack.extend(inode.children().iter().rev().map(|c| c.id));
        }
    }

    /// Checks the tree's invariants (tests and image loading).
    pub fn verify(&self) -> Result<(), String> {
        let mut seen = 0usize;
        let mut files = 0u64;
        let mut dirs = 0u64;
        let mut problem = None;
        self.walk_preorder(|id, inode| {
            seen += 1;
            if inode.is_dir() {
                dirs += 1;
            } else {
                files += 1;
            }
            let children = inode.children();
            for pair in children.windows(2) {
                let (a, b) = (self.get(pair[0].id), self.get(pair[1].id));
                match (a, b) {
                    (Some(a), Some(b)) if a.name.as_bytes() < b.name.as_bytes() => {}
                    _ => problem = Some(format!("children of inode {id} are not sorted or missing")),
                }
            }
            for child in children {
                match self.get(child.id) {
                    Some(c) if c.parent == id && child.key == NameKey::of(c.name.as_bytes()) => {}
                    _ => {
                        problem = Some(format!("child {} of inode {id} has a wrong parent or key", child.id))
                    }
                }
            }
        });
        if let Some(problem) = problem {
            return Err(problem);
        }
        if seen != self.inodes.len() {
            return Err(format!("{} inodes reachable, {} stored", seen, self.inodes.len()));
        }
        if files != self.file_count || dirs != self.directory_count {
            return Err(format!(
                "counted {files} files and {dirs} dirs, recorded {} and {}",
                self.file_count, self.directory_count
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::sync::Arc;

    fn dir(ns: &mut Namespace, parent: InodeId, name: &str, owner: &str, perm: u16) -> InodeId {
        let id = ns.allocate_inode_id();
        let owner = ns.strings.intern(owner).unwrap();
        let group = ns.strings.intern("staff").unwrap();
        let inode = Inode {
            parent,
            mtime_ms: 1,
            atime_ms: 0,
            name: Name::new(name),
            owner,
            group,
            perm,
            replication: 0,
            body: Body::Directory(Box::default()),
        };
        ns.insert(id, inode).unwrap();
        id
    }

    fn file(ns: &mut Namespace, parent: InodeId, name: &str, owner: &str) -> InodeId {
        let id = ns.allocate_inode_id();
        let owner = ns.strings.intern(owner).unwrap();
        let group = ns.strings.intern("staff").unwrap();
        let inode = Inode {
            parent,
            mtime_ms: 1,
            atime_ms: 1,
            name: Name::new(name),
            owner,
            group,
            perm: 0o644,
            replication: 3,
            body: Body::File { blocks: vec![BlockId(7)].into_boxed_slice(), blocksize: 128 },
        };
        ns.insert(id, inode).unwrap();
        id
    }

    fn user(name: &str) -> Caller {
        Caller {
            user: name.into(),
            groups: Arc::new(vec![name.into()]),
            is_superuser: false,
            machine: IpAddr::from([127, 0, 0, 1]),
        }
    }

    #[test]
    fn inode_stays_compact() {
        assert!(std::mem::size_of::<Inode>() <= 80, "Inode is {} bytes", std::mem::size_of::<Inode>());
    }

    #[test]
    fn insert_lookup_move_remove() {
        let mut ns = Namespace::new("hdfs", "supergroup", 0o755, 0);
        let a = dir(&mut ns, ROOT_INODE_ID, "a", "alice", 0o755);
        let b = dir(&mut ns, a, "b", "alice", 0o755);
        let f = file(&mut ns, b, "f", "alice");
        for name in ["z", "m", "c"] {
            file(&mut ns, a, name, "alice");
        }
        assert_eq!(a.0, FIRST_INODE_ID);
        assert_eq!(ns.lookup_child(a, b"m").map(|id| ns.inode(id).name.to_string()), Some("m".into()));
        let names: Vec<String> =
            ns.inode(a).children().iter().map(|c| ns.inode(c.id).name.to_string()).collect();
        assert_eq!(names, vec!["b", "c", "m", "z"]);
        assert_eq!(ns.path_of(f), "/a/b/f");
        let resolved = ns.resolve_unchecked("/a/b/f/x").unwrap();
        assert_eq!(resolved.inodes, vec![Some(ROOT_INODE_ID), Some(a), Some(b), Some(f), None]);
        assert!(ns.insert(InodeId(99_999), Inode { name: Name::new("f"), ..clone_file(&ns, f) }).is_err());

        ns.move_inode(b, ROOT_INODE_ID, "b2").unwrap();
        assert_eq!(ns.path_of(f), "/b2/f");
        assert!(ns.move_inode(a, a, "self").is_err());
        ns.move_inode(f, ROOT_INODE_ID, "a0").unwrap();
        let names: Vec<String> =
            ns.root().children().iter().map(|c| ns.inode(c.id).name.to_string()).collect();
        assert_eq!(names, vec!["a", "a0", "b2"]);
        ns.verify().unwrap();

        let removed = ns.remove_subtree(a).unwrap();
        assert_eq!(removed.files.len(), 3);
        assert_eq!(removed.blocks.len(), 3);
        assert_eq!(ns.file_count(), 1);
        ns.verify().unwrap();
        let counts = ns.content_counts(ROOT_INODE_ID, |_| 10);
        assert_eq!(counts, ContentCounts { length: 10, files: 1, directories: 2, space_consumed: 30 });
    }

    #[test]
    fn name_keys_order_as_names() {
        // Short, exactly 7 and 8 bytes, long names sharing a 7-byte prefix, NUL bytes,
        // non-ASCII: every pair's key order must agree with the byte order of the names.
        let names: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"a\0",
            b"a\0\0",
            b"ab",
            b"abcdef",
            b"abcdefg",
            b"abcdefg\0",
            b"abcdefgh",
            b"abcdefgi",
            b"abcdefgh-long",
            b"abcdefh",
            b"b",
            b"part-00000",
            b"part-00001",
            b"part-0",
            b"\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
        ];
        for a in &names {
            for b in &names {
                let (ka, kb) = (NameKey::of(a), NameKey::of(b));
                if ka != kb {
                    assert_eq!(ka.cmp(&kb), a.cmp(b), "{a:?} vs {b:?}");
                } else if ka.is_whole_name() {
                    assert_eq!(a, b, "equal whole-name keys for different names");
                }
            }
        }
    }

    #[test]
    fn lookups_break_key_ties_by_name() {
        let mut ns = Namespace::new("hdfs", "supergroup", 0o755, 0);
        let d = dir(&mut ns, ROOT_INODE_ID, "d", "alice", 0o755);
        let mut ids = HashMap::new();
        // Names sharing their first 7 bytes tie on keys; short ones never do.
        let names = ["part-00002", "part-00000", "part-0", "part-00001", "p", "part-000", "part-00"];
        for name in names {
            ids.insert(name, file(&mut ns, d, name, "alice"));
        }
        for name in names {
            assert_eq!(ns.lookup_child(d, name.as_bytes()), Some(ids[name]), "{name}");
        }
        for missing in ["part-00003", "part-0000", "part", "q", ""] {
            assert_eq!(ns.lookup_child(d, missing.as_bytes()), None, "{missing}");
        }
        ns.move_inode(ids["part-00001"], d, "part-00009").unwrap();
        assert_eq!(ns.lookup_child(d, b"part-00001"), None);
        assert_eq!(ns.lookup_child(d, b"part-00009"), Some(ids["part-00001"]));
        assert_eq!(ns.children_after(d, b"part-00000"), 5);
        let listed: Vec<String> =
            ns.inode(d).children().iter().map(|c| ns.inode(c.id).name.to_string()).collect();
        assert_eq!(listed, ["p", "part-0", "part-00", "part-000", "part-00000", "part-00002", "part-00009"]);
        ns.verify().unwrap();
    }

    fn clone_file(ns: &Namespace, id: InodeId) -> Inode {
        let inode = ns.inode(id);
        Inode {
            parent: inode.parent,
            mtime_ms: inode.mtime_ms,
            atime_ms: inode.atime_ms,
            name: inode.name.clone(),
            owner: inode.owner,
            group: inode.group,
            perm: inode.perm,
            replication: inode.replication,
            body: Body::File { blocks: Box::new([]), blocksize: 1 },
        }
    }

    #[test]
    fn permission_checks_follow_java() {
        let mut ns = Namespace::new("hdfs", "supergroup", 0o755, 0);
        let private = dir(&mut ns, ROOT_INODE_ID, "private", "bob", 0o700);
        file(&mut ns, private, "f", "bob");
        let tmp = dir(&mut ns, ROOT_INODE_ID, "tmp", "hdfs", 0o1777);
        file(&mut ns, tmp, "bobs", "bob");
        let alice = user("alice");

        let err = ns.resolve(&alice, "/private/f", DirOp::Read, true).unwrap_err();
        assert_eq!(err.kind, ErrorKind::AccessControl);
        assert_eq!(
            err.message,
            "Permission denied: user=alice, access=EXECUTE, inode=\"/private\":bob:staff:drwx------"
        );
        let resolved = ns.resolve(&alice, "/newdir", DirOp::Create, true).unwrap();
        let err = ns
            .check_access(
                &alice,
                &resolved,
                Access { ancestor: Some(FsAction::Write), ..Access::default() },
                true,
            )
            .unwrap_err();
        assert_eq!(
            err.message,
            "Permission denied: user=alice, access=WRITE, inode=\"/\":hdfs:supergroup:drwxr-xr-x"
        );
        // Disabled permissions and superusers pass.
        assert!(ns.resolve(&alice, "/private/f", DirOp::Read, false).is_ok());
        assert!(ns.resolve(&Caller::superuser("hdfs"), "/private/f", DirOp::Read, true).is_ok());

        let resolved = ns.resolve(&alice, "/tmp/bobs", DirOp::Write, true).unwrap();
        let err = ns
            .check_access(
                &alice,
                &resolved,
                Access { parent: Some(FsAction::Write), ..Access::default() },
                true,
            )
            .unwrap_err();
        assert!(err.message.starts_with("Permission denied by sticky bit: user=alice, path=\"/tmp/bobs\":bob:staff:-rw-r--r--, parent=\"/tmp\":hdfs:staff:drwxrwxrwt"), "{}", err.message);
        assert!(ns
            .check_access(
                &user("bob"),
                &resolved,
                Access { parent: Some(FsAction::Write), ..Access::default() },
                true
            )
            .is_ok());

        // A path through a file: AccessControlException, or ParentNotDirectory when creating.
        let err = ns.resolve(&user("bob"), "/tmp/bobs/x", DirOp::Read, true).unwrap_err();
        assert_eq!(err.kind, ErrorKind::AccessControl);
        assert_eq!(err.message, "/tmp/bobs (is not a directory)");
        let err = ns.resolve(&user("bob"), "/tmp/bobs/x", DirOp::Create, true).unwrap_err();
        assert_eq!(err.kind, ErrorKind::ParentNotDirectory);

        let resolved = ns.resolve(&alice, "/private", DirOp::Read, true).unwrap();
        let err = ns
            .check_access(
                &alice,
                &resolved,
                Access { sub_access: Some(FsAction::ReadExecute), ..Access::default() },
                true,
            )
            .unwrap_err();
        assert!(err.message.contains("access=READ_EXECUTE, inode=\"/private\""));
        let err = ns
            .check_access(&alice, &resolved, Access { owner: true, ..Access::default() }, true)
            .unwrap_err();
        assert_eq!(err.message, "Permission denied. user=alice is not the owner of inode=/private");
        assert!(ns.resolve(&alice, "/a/../b", DirOp::Read, true).is_err());
    }
}
