//! Registered datanodes: identity (with the address the namenode saw), racks, storage
//! reports, liveness, and the commands waiting for their next heartbeat.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ringfs_common::proto::common::TokenProto;
use ringfs_common::proto::hdfs::datanode::{DatanodeRegistrationProto, RecoveringBlockProto};
use ringfs_common::proto::hdfs::{
    BlockProto, DatanodeIdProto, DatanodeInfoProto, DatanodeStorageProto, StorageReportProto,
    StorageTypeProto,
};
use tracing::{info, warn};

use crate::blocks::{DATANODE_INDEX_MAX, STORAGES_PER_DATANODE_MAX};

/// Rack of nodes with no mapping (NetworkTopology.DEFAULT_RACK).
pub const DEFAULT_RACK: &str = "/default-rack";
/// How long a topology script may run.
const TOPOLOGY_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct StorageInfo {
    pub uuid: String,
    pub storage_type: i32,
    pub state: i32,
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
    pub block_pool_used: u64,
    pub non_dfs_used: u64,
    pub failed: bool,
}

/// A replication order: copy `block` to `targets` (node index, storage index).
#[derive(Debug, Clone)]
pub struct Transfer {
    pub block: BlockProto,
    pub targets: Vec<(u32, u8)>,
}

#[derive(Debug, Default)]
pub struct PendingCommands {
    pub transfers: Vec<Transfer>,
    pub invalidates: Vec<BlockProto>,
    pub recoveries: Vec<RecoveringBlockProto>,
}

impl PendingCommands {
    pub fn clear(&mut self) {
        self.transfers.clear();
        self.invalidates.clear();
        self.recoveries.clear();
    }
}

#[derive(Debug)]
pub struct Datanode {
    pub index: u32,
    pub registration: DatanodeRegistrationProto,
    pub rack: String,
    pub storages: Vec<StorageInfo>,
    /// Registered with this namenode since it started (or since it was declared dead).
    pub registered: bool,
    pub last_heartbeat: Instant,
    pub last_heartbeat_ms: u64,
    pub last_block_report_ms: u64,
    pub xceiver_count: u32,
    pub xmits_in_progress: u32,
    pub cache_capacity: u64,
    pub cache_used: u64,
    pub commands: PendingCommands,
}

impl Datanode {
    pub fn id(&self) -> &DatanodeIdProto {
        &self.registration.datanode_id
    }

    pub fn uuid(&self) -> &str {
        &self.registration.datanode_id.datanode_uuid
    }

    pub fn ip(&self) -> &str {
        &self.registration.datanode_id.ip_addr
    }

    pub fn xfer_addr(&self) -> String {
        format!("{}:{}", self.id().ip_addr, self.id().xfer_port)
    }

    pub fn capacity(&self) -> u64 {
        self.storages.iter().filter(|s| !s.failed).map(|s| s.capacity).sum()
    }

    pub fn dfs_used(&self) -> u64 {
        self.storages.iter().map(|s| s.dfs_used).sum()
    }

    pub fn remaining(&self) -> u64 {
        self.storages.iter().filter(|s| !s.failed).map(|s| s.remaining).sum()
    }

    pub fn block_pool_used(&self) -> u64 {
        self.storages.iter().map(|s| s.block_pool_used).sum()
    }

    pub fn non_dfs_used(&self) -> u64 {
        self.storages.iter().map(|s| s.non_dfs_used).sum()
    }

    /// The storage index for a storage uuid, adding it if new (None past the limit).
    pub fn storage_index(&mut self, uuid: &str, storage_type: i32) -> Option<u8> {
        if let Some(i) = self.storages.iter().position(|s| s.uuid == uuid) {
            return Some(i as u8);
        }
        if self.storages.len() > usize::from(STORAGES_PER_DATANODE_MAX) {
            warn!(datanode = %self.xfer_addr(), storage = uuid, "too many storages on one datanode; ignoring");
            return None;
        }
        self.storages.push(StorageInfo { uuid: uuid.to_string(), storage_type, ..StorageInfo::default() });
        Some((self.storages.len() - 1) as u8)
    }

    pub fn storage_uuid(&self, index: u8) -> &str {
        self.storages.get(usize::from(index)).map(|s| s.uuid.as_str()).unwrap_or("")
    }

    pub fn storage_type(&self, index: u8) -> i32 {
        self.storages.get(usize::from(index)).map(|s| s.storage_type).unwrap_or(StorageTypeProto::Disk as i32)
    }

    /// The storage to write new replicas on: the non-failed one with most room.
    pub fn preferred_storage(&self) -> u8 {
        self.storages
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.failed)
            .max_by_key(|(_, s)| s.remaining)
            .map(|(i, _)| i as u8)
            .unwrap_or(0)
    }

    #[allow(deprecated)] // storageUuid is deprecated yet required on the wire
    pub fn update_storages(&mut self, reports: &[StorageReportProto]) {
        for report in reports {
            let (uuid, storage_type, state) = match &report.storage {
                Some(s) => (s.storage_uuid.clone(), s.storage_type.unwrap_or(1), s.state.unwrap_or(0)),
                None => (report.storage_uuid.clone(), StorageTypeProto::Disk as i32, 0),
            };
            let Some(index) = self.storage_index(&uuid, storage_type) else { continue };
            let storage = &mut self.storages[usize::from(index)];
            storage.storage_type = storage_type;
            storage.state = state;
            storage.capacity = report.capacity.unwrap_or(0);
            storage.dfs_used = report.dfs_used.unwrap_or(0);
            storage.remaining = report.remaining.unwrap_or(0);
            storage.block_pool_used = report.block_pool_used.unwrap_or(0);
            storage.non_dfs_used = report.non_dfs_used.unwrap_or(0);
            storage.failed = report.failed.unwrap_or(false);
        }
    }

    /// Can it take a new block of `blocksize` bytes? Nodes that have not reported
    /// capacity yet are given the benefit of the doubt.
    pub fn has_room_for(&self, blocksize: u64) -> bool {
        let capacity = self.capacity();
        capacity == 0 || self.remaining() >= blocksize
    }

    #[allow(deprecated)] // storageUuid is deprecated yet required on the wire
    pub fn storage_report(&self, index: usize) -> StorageReportProto {
        let s = &self.storages[index];
        StorageReportProto {
            storage_uuid: s.uuid.clone(),
            failed: Some(s.failed),
            capacity: Some(s.capacity),
            dfs_used: Some(s.dfs_used),
            remaining: Some(s.remaining),
            block_pool_used: Some(s.block_pool_used),
            storage: Some(DatanodeStorageProto {
                storage_uuid: s.uuid.clone(),
                state: Some(s.state),
                storage_type: Some(s.storage_type),
            }),
            non_dfs_used: Some(s.non_dfs_used),
            mount: None,
        }
    }
}

/// The empty block token every LocatedBlock carries with block tokens off (all four
/// fields present, as Java's proto2 parser requires).
pub fn empty_token() -> TokenProto {
    TokenProto::default()
}

#[derive(Debug, Default)]
pub struct DatanodeManager {
    nodes: Vec<Datanode>,
    by_uuid: HashMap<String, u32>,
    by_xfer_addr: HashMap<String, u32>,
}

/// What a registration did.
#[derive(Debug)]
pub struct Registered {
    pub index: u32,
    /// Another node index that used the same transfer address and is now replaced.
    pub replaced: Option<u32>,
    /// The node was known before (its replicas must be re-reported).
    pub was_known: bool,
}

impl DatanodeManager {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, index: u32) -> Option<&Datanode> {
        self.nodes.get(index as usize)
    }

    pub fn get_mut(&mut self, index: u32) -> Option<&mut Datanode> {
        self.nodes.get_mut(index as usize)
    }

    pub fn node(&self, index: u32) -> &Datanode {
        &self.nodes[index as usize]
    }

    pub fn node_mut(&mut self, index: u32) -> &mut Datanode {
        &mut self.nodes[index as usize]
    }

    pub fn all(&self) -> impl Iterator<Item = &Datanode> {
        self.nodes.iter()
    }

    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut Datanode> {
        self.nodes.iter_mut()
    }

    /// Registered, heartbeating nodes.
    pub fn live(&self) -> impl Iterator<Item = &Datanode> {
        self.nodes.iter().filter(|n| n.registered)
    }

    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    pub fn is_live(&self, index: u32) -> bool {
        self.get(index).is_some_and(|n| n.registered)
    }

    pub fn by_uuid(&self, uuid: &str) -> Option<u32> {
        self.by_uuid.get(uuid).copied()
    }

    /// A registered node by uuid.
    pub fn registered(&self, uuid: &str) -> Option<u32> {
        self.by_uuid(uuid).filter(|i| self.node(*i).registered)
    }

    /// Finds a node from a client-supplied DatanodeID/Info (uuid first, then address).
    pub fn find(&self, id: &DatanodeIdProto) -> Option<u32> {
        if let Some(index) = self.by_uuid(&id.datanode_uuid) {
            return Some(index);
        }
        self.by_xfer_addr.get(&format!("{}:{}", id.ip_addr, id.xfer_port)).copied()
    }

    /// A favored node given as `host:port` (ip or hostname, transfer port).
    pub fn find_addr(&self, addr: &str) -> Option<u32> {
        if let Some(index) = self.by_xfer_addr.get(addr) {
            return Some(*index);
        }
        let (host, port) = addr.rsplit_once(':')?;
        let port: u32 = port.parse().ok()?;
        self.nodes.iter().position(|n| n.id().host_name == host && n.id().xfer_port == port).map(|i| i as u32)
    }

    /// The registered node on the machine at `ip`, if any (writer-local placement).
    pub fn on_host(&self, ip: IpAddr) -> Option<u32> {
        let ip = ip.to_string();
        self.live().find(|n| n.ip() == ip).map(|n| n.index)
    }

    /// Adds or refreshes a node. The registration's ipAddr has already been replaced by
    /// the address the RPC came from, as Java does.
    pub fn register(
        &mut self,
        registration: DatanodeRegistrationProto,
        rack: String,
        now: Instant,
        now_ms: u64,
    ) -> Registered {
        let uuid = registration.datanode_id.datanode_uuid.clone();
        let xfer_addr =
            format!("{}:{}", registration.datanode_id.ip_addr, registration.datanode_id.xfer_port);
        let replaced = self
            .by_xfer_addr
            .get(&xfer_addr)
            .copied()
            .filter(|i| self.nodes[*i as usize].uuid() != uuid && self.nodes[*i as usize].registered);
        if let Some(old) = replaced {
            info!(datanode = %xfer_addr, old_uuid = %self.nodes[old as usize].uuid(), new_uuid = %uuid,
                "a datanode re-registered at the same address with a new identity");
            let node = &mut self.nodes[old as usize];
            node.registered = false;
            node.commands.clear();
        }
        let (index, was_known) = match self.by_uuid.get(&uuid) {
            Some(index) => (*index, true),
            None => {
                let index = self.nodes.len() as u32;
                assert!(index <= DATANODE_INDEX_MAX, "datanode table full");
                self.nodes.push(Datanode {
                    index,
                    registration: registration.clone(),
                    rack: rack.clone(),
                    storages: Vec::new(),
                    registered: false,
                    last_heartbeat: now,
                    last_heartbeat_ms: now_ms,
                    last_block_report_ms: 0,
                    xceiver_count: 0,
                    xmits_in_progress: 0,
                    cache_capacity: 0,
                    cache_used: 0,
                    commands: PendingCommands::default(),
                });
                self.by_uuid.insert(uuid.clone(), index);
                (index, false)
            }
        };
        let node = &mut self.nodes[index as usize];
        let old_addr = node.xfer_addr();
        node.registration = registration;
        node.rack = rack;
        node.registered = true;
        node.last_heartbeat = now;
        node.last_heartbeat_ms = now_ms;
        node.commands.clear();
        if old_addr != xfer_addr && self.by_xfer_addr.get(&old_addr) == Some(&index) {
            self.by_xfer_addr.remove(&old_addr);
        }
        self.by_xfer_addr.insert(xfer_addr, index);
        Registered { index, replaced, was_known }
    }

    /// Nodes whose last heartbeat is older than `expiry`; they are marked unregistered.
    pub fn expire(&mut self, now: Instant, expiry: Duration) -> Vec<u32> {
        let mut dead = Vec::new();
        for node in self.nodes.iter_mut().filter(|n| n.registered) {
            if now.saturating_duration_since(node.last_heartbeat) > expiry {
                node.registered = false;
                node.commands.clear();
                warn!(datanode = %node.xfer_addr(), uuid = %node.uuid(), "datanode is dead (no heartbeat)");
                dead.push(node.index);
            }
        }
        dead
    }

    /// DatanodeInfoProto for clients and reports; `num_blocks` is the replicas the block
    /// map knows on the node.
    pub fn info(&self, index: u32, num_blocks: u64) -> DatanodeInfoProto {
        let node = self.node(index);
        DatanodeInfoProto {
            id: node.id().clone(),
            capacity: Some(node.capacity()),
            dfs_used: Some(node.dfs_used()),
            remaining: Some(node.remaining()),
            block_pool_used: Some(node.block_pool_used()),
            last_update: Some(node.last_heartbeat_ms),
            xceiver_count: Some(node.xceiver_count),
            location: Some(node.rack.clone()),
            non_dfs_used: Some(node.non_dfs_used()),
            admin_state: Some(0),
            cache_capacity: Some(node.cache_capacity),
            cache_used: Some(node.cache_used),
            last_update_monotonic: Some(node.last_heartbeat_ms),
            upgrade_domain: None,
            last_block_report_time: Some(node.last_block_report_ms),
            last_block_report_monotonic: Some(node.last_block_report_ms),
            num_blocks: Some(num_blocks.min(u64::from(u32::MAX)) as u32),
        }
    }
}

/// Rack resolution: `net.topology.script.file.name` (run with the address, as Hadoop's
/// ScriptBasedMapping), else `net.topology.table.file.name` (`host rack` lines), else
/// everything on [`DEFAULT_RACK`]. Results are cached per address.
#[derive(Debug, Default)]
pub struct Topology {
    script: Option<String>,
    table: HashMap<String, String>,
    cache: std::sync::Mutex<HashMap<String, String>>,
}

impl Topology {
    pub fn new(script: Option<String>, table_file: Option<String>) -> Topology {
        let mut table = HashMap::new();
        if let Some(path) = table_file {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for line in text.lines() {
                        let mut parts = line.split_whitespace();
                        if let (Some(host), Some(rack)) = (parts.next(), parts.next()) {
                            if !host.starts_with('#') {
                                table.insert(host.to_string(), rack.to_string());
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(file = %path, error = %e, "cannot read the topology table; using /default-rack")
                }
            }
        }
        Topology { script, table, cache: std::sync::Mutex::new(HashMap::new()) }
    }

    pub async fn resolve(&self, ip: &str, host_name: &str) -> String {
        if let Some(rack) = self.cache.lock().expect("topology cache").get(ip) {
            return rack.clone();
        }
        let rack = match &self.script {
            Some(script) => run_topology_script(script, ip).await,
            None => self.table.get(ip).or_else(|| self.table.get(host_name)).cloned(),
        }
        .unwrap_or_else(|| DEFAULT_RACK.to_string());
        self.cache.lock().expect("topology cache").insert(ip.to_string(), rack.clone());
        rack
    }
}

async fn run_topology_script(script: &str, ip: &str) -> Option<String> {
    let output = tokio::process::Command::new(script).arg(ip).output();
    match tokio::time::timeout(TOPOLOGY_SCRIPT_TIMEOUT, output).await {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            match text.split_whitespace().next() {
                Some(rack) if rack.starts_with('/') => Some(rack.to_string()),
                other => {
                    warn!(script, ip, output = ?other, "topology script gave no rack; using /default-rack");
                    None
                }
            }
        }
        Ok(Ok(out)) => {
            warn!(script, ip, status = %out.status, "topology script failed; using /default-rack");
            None
        }
        Ok(Err(e)) => {
            warn!(script, ip, error = %e, "cannot run the topology script; using /default-rack");
            None
        }
        Err(_) => {
            warn!(script, ip, "topology script timed out; using /default-rack");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfs_common::proto::hdfs::{BlockKeyProto, ExportedBlockKeysProto, StorageInfoProto};

    pub fn registration(uuid: &str, ip: &str, port: u32) -> DatanodeRegistrationProto {
        DatanodeRegistrationProto {
            datanode_id: DatanodeIdProto {
                ip_addr: ip.into(),
                host_name: "host".into(),
                datanode_uuid: uuid.into(),
                xfer_port: port,
                info_port: 0,
                ipc_port: 0,
                info_secure_port: None,
            },
            storage_info: StorageInfoProto::default(),
            keys: ExportedBlockKeysProto {
                is_block_token_enabled: false,
                key_update_interval: 0,
                token_life_time: 0,
                current_key: BlockKeyProto::default(),
                all_keys: vec![],
            },
            software_version: "3.5.0".into(),
        }
    }

    #[test]
    fn register_expire_reregister() {
        let mut dns = DatanodeManager::default();
        let t0 = Instant::now();
        let a = dns.register(registration("a", "127.0.0.1", 1), DEFAULT_RACK.into(), t0, 0);
        let b = dns.register(registration("b", "127.0.0.1", 2), DEFAULT_RACK.into(), t0, 0);
        assert_eq!((a.index, b.index), (0, 1));
        assert!(!a.was_known);
        assert_eq!(dns.find_addr("127.0.0.1:2"), Some(1));
        assert_eq!(dns.find_addr("host:1"), Some(0));
        assert_eq!(dns.on_host("127.0.0.1".parse().unwrap()), Some(0));
        dns.node_mut(1).last_heartbeat = t0 + Duration::from_secs(100);
        let dead = dns.expire(t0 + Duration::from_secs(61), Duration::from_secs(60));
        assert_eq!(dead, vec![0]);
        assert_eq!(dns.live_count(), 1);
        let again = dns.register(registration("a", "127.0.0.1", 1), DEFAULT_RACK.into(), t0, 0);
        assert!(again.was_known);
        assert_eq!(again.index, 0);
        // A new identity at an address in use replaces the old node.
        let c = dns.register(registration("c", "127.0.0.1", 2), DEFAULT_RACK.into(), t0, 0);
        assert_eq!(c.replaced, Some(1));
        assert!(!dns.node(1).registered);
    }

    #[tokio::test]
    async fn topology_script_and_table() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("topo.sh");
        std::fs::write(&script, "#!/bin/sh\ncase $1 in 10.*) echo /rack-a;; *) echo /rack-b;; esac\n")
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let topology = Topology::new(Some(script.display().to_string()), None);
        assert_eq!(topology.resolve("10.1.1.1", "h").await, "/rack-a");
        assert_eq!(topology.resolve("127.0.0.1", "h").await, "/rack-b");
        let table = dir.path().join("table");
        std::fs::write(&table, "127.0.0.1 /r1\nhostx /r2\n").unwrap();
        let topology = Topology::new(None, Some(table.display().to_string()));
        assert_eq!(topology.resolve("127.0.0.1", "h").await, "/r1");
        assert_eq!(topology.resolve("127.0.0.2", "hostx").await, "/r2");
        assert_eq!(topology.resolve("127.0.0.3", "y").await, DEFAULT_RACK);
        assert_eq!(Topology::default().resolve("1.2.3.4", "z").await, DEFAULT_RACK);
    }
}
