//! Typed async wrappers for the ClientProtocol calls of the namenode, over one
//! multiplexed [`RpcClient`] connection, plus the lease renewer that keeps files open
//! for write alive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prost::Message;
use ringfs_common::ipc::{exception, protocol};
use ringfs_common::proto::hdfs::*;
use ringfs_rpc::RpcClient;
use tokio::sync::OnceCell;

use crate::error::{DfsError, Result};
use crate::status::{ContentSummary, FileStatus, FsStats, QuotaUsage};

/// How often a lease is renewed while files are open for write: Java's LeaseRenewer
/// renews at half the 60 s soft limit.
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(30);

/// First pause before asking complete() again: the datanodes' block-received reports
/// usually arrive within milliseconds on a healthy cluster.
const COMPLETE_RETRY_FIRST_DELAY: Duration = Duration::from_millis(50);
/// Longest pause between complete() attempts.
const COMPLETE_RETRY_DELAY_MAX: Duration = Duration::from_millis(1600);
/// Attempts before giving up on complete(): about 20 s in all, more than Java's ~12 s.
const COMPLETE_ATTEMPTS_MAX: u32 = 18;

/// addBlock retries on NotReplicatedYetException, as Java's DFSOutputStream does
/// (5 tries, 400 ms doubling).
const ADD_BLOCK_ATTEMPTS_MAX: u32 = 5;
const ADD_BLOCK_RETRY_FIRST_DELAY: Duration = Duration::from_millis(400);

/// CreateFlag bits of create() and append().
pub mod create_flag {
    pub const CREATE: u32 = 0x01;
    pub const OVERWRITE: u32 = 0x02;
    pub const APPEND: u32 = 0x04;
    pub const NEW_BLOCK: u32 = 0x20;
}

/// The user the client acts as: `HADOOP_USER_NAME`, else the OS login name, as Java's
/// UserGroupInformation picks it under simple authentication.
pub fn default_user() -> String {
    if let Ok(user) = std::env::var("HADOOP_USER_NAME") {
        if !user.is_empty() {
            return user;
        }
    }
    match nix::unistd::User::from_uid(nix::unistd::getuid()) {
        Ok(Some(user)) => user.name,
        _ => std::env::var("USER").unwrap_or_else(|_| "root".to_string()),
    }
}

/// A client name in Java's `DFSClient_NONMAPREDUCE_<random int>_<thread id>` style; the
/// namenode keys leases by it.
pub fn new_client_name() -> String {
    let random: i32 = rand::random();
    format!("DFSClient_NONMAPREDUCE_{random}_1")
}

struct LeaseState {
    open_writers: usize,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

/// The namenode's ClientProtocol, typed.
pub struct NamenodeClient {
    addr: String,
    user: String,
    client_name: String,
    rpc: Mutex<Arc<RpcClient>>,
    server_defaults: OnceCell<FsServerDefaultsProto>,
    lease: Mutex<LeaseState>,
    lease_renew_interval_ms: AtomicU64,
    myself: Weak<NamenodeClient>,
}

/// Keeps the lease renewer running while it lives: one per file open for write.
pub struct LeaseGuard {
    namenode: Arc<NamenodeClient>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let mut lease = self.namenode.lease.lock().expect("lease lock");
        lease.open_writers = lease.open_writers.saturating_sub(1);
    }
}

impl NamenodeClient {
    /// Connects to the namenode at `addr` (`host:port`) as `user`.
    pub async fn connect(addr: &str, user: &str) -> Result<Arc<NamenodeClient>> {
        let rpc =
            RpcClient::connect(addr, user, protocol::CLIENT).await.map_err(|e| DfsError::rpc(addr, e))?;
        Ok(Arc::new_cyclic(|myself| NamenodeClient {
            addr: addr.to_string(),
            user: user.to_string(),
            client_name: new_client_name(),
            rpc: Mutex::new(Arc::new(rpc)),
            server_defaults: OnceCell::new(),
            lease: Mutex::new(LeaseState { open_writers: 0, renewer: None }),
            lease_renew_interval_ms: AtomicU64::new(LEASE_RENEW_INTERVAL.as_millis() as u64),
            myself: myself.clone(),
        }))
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn client_name(&self) -> &str {
        &self.client_name
    }

    /// Calls a ClientProtocol method, reconnecting first if the connection was lost.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        method: &'static str,
        request: &Req,
    ) -> Result<Resp> {
        let rpc = self.connection().await?;
        rpc.call(method, request).await.map_err(|e| DfsError::rpc(&self.addr, e))
    }

    async fn connection(&self) -> Result<Arc<RpcClient>> {
        let current = Arc::clone(&self.rpc.lock().expect("rpc lock"));
        if current.is_open() {
            return Ok(current);
        }
        tracing::debug!(addr = %self.addr, "namenode connection lost; reconnecting");
        let fresh = RpcClient::connect(&self.addr, &self.user, protocol::CLIENT)
            .await
            .map_err(|e| DfsError::rpc(&self.addr, e))?;
        let fresh = Arc::new(fresh);
        *self.rpc.lock().expect("rpc lock") = Arc::clone(&fresh);
        Ok(fresh)
    }

    // ---- namespace reads ----

    /// The status of `path`, `None` if it does not exist.
    pub async fn get_file_info(&self, path: &str) -> Result<Option<FileStatus>> {
        let request = GetFileInfoRequestProto { src: path.to_string() };
        let response: GetFileInfoResponseProto = self.call("getFileInfo", &request).await?;
        Ok(response.fs.map(|fs| FileStatus::from_proto(&fs, path)))
    }

    /// The status of `path`, or [`DfsError::NotFound`].
    pub async fn stat(&self, path: &str) -> Result<FileStatus> {
        self.get_file_info(path).await?.ok_or_else(|| DfsError::NotFound { path: path.to_string() })
    }

    /// One page of a listing; `None` if `path` does not exist.
    pub async fn get_listing_page(
        &self,
        path: &str,
        start_after: &[u8],
        need_location: bool,
    ) -> Result<Option<DirectoryListingProto>> {
        let request = GetListingRequestProto {
            src: path.to_string(),
            start_after: bytes::Bytes::copy_from_slice(start_after),
            need_location,
        };
        let response: GetListingResponseProto = self.call("getListing", &request).await?;
        Ok(response.dir_list)
    }

    /// Every entry of a directory (all pages), or the file itself for a file; `None` if
    /// `path` does not exist.
    pub async fn get_listing(&self, path: &str) -> Result<Option<Vec<FileStatus>>> {
        let mut entries = Vec::new();
        let mut start_after = bytes::Bytes::new();
        loop {
            let Some(page) = self.get_listing_page(path, &start_after, false).await? else {
                // Deleted between pages: report what the first page saw, as Java does.
                return Ok(if entries.is_empty() { None } else { Some(entries) });
            };
            let Some(last) = page.partial_listing.last() else {
                return Ok(Some(entries));
            };
            start_after = last.path.clone();
            entries.extend(page.partial_listing.iter().map(|p| FileStatus::from_proto(p, path)));
            if page.remaining_entries == 0 {
                return Ok(Some(entries));
            }
        }
    }

    pub async fn get_block_locations(
        &self,
        path: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<LocatedBlocksProto>> {
        let request = GetBlockLocationsRequestProto { src: path.to_string(), offset, length };
        let response: GetBlockLocationsResponseProto = self.call("getBlockLocations", &request).await?;
        Ok(response.locations)
    }

    pub async fn get_content_summary(&self, path: &str) -> Result<ContentSummary> {
        let request = GetContentSummaryRequestProto { path: path.to_string() };
        let response: GetContentSummaryResponseProto = self.call("getContentSummary", &request).await?;
        Ok(ContentSummary::from(&response.summary))
    }

    pub async fn get_quota_usage(&self, path: &str) -> Result<QuotaUsage> {
        let request = GetQuotaUsageRequestProto { path: path.to_string() };
        let response: GetQuotaUsageResponseProto = self.call("getQuotaUsage", &request).await?;
        Ok(QuotaUsage::from(&response.usage))
    }

    /// The namenode's defaults, fetched once per client (Java caches them for an hour).
    pub async fn get_server_defaults(&self) -> Result<FsServerDefaultsProto> {
        let defaults = self
            .server_defaults
            .get_or_try_init(|| async {
                let response: GetServerDefaultsResponseProto =
                    self.call("getServerDefaults", &GetServerDefaultsRequestProto {}).await?;
                Ok::<_, DfsError>(response.server_defaults)
            })
            .await?;
        Ok(defaults.clone())
    }

    pub async fn get_fs_stats(&self) -> Result<FsStats> {
        let r: GetFsStatsResponseProto = self.call("getFsStats", &GetFsStatusRequestProto {}).await?;
        Ok(FsStats {
            capacity: r.capacity,
            used: r.used,
            remaining: r.remaining,
            under_replicated: r.under_replicated,
            corrupt_blocks: r.corrupt_blocks,
            missing_blocks: r.missing_blocks,
            missing_repl_one_blocks: r.missing_repl_one_blocks.unwrap_or(0),
            blocks_in_future: r.blocks_in_future.unwrap_or(0),
            pending_deletion_blocks: r.pending_deletion_blocks.unwrap_or(0),
        })
    }

    pub async fn get_fs_replicated_block_stats(&self) -> Result<GetFsReplicatedBlockStatsResponseProto> {
        self.call("getFsReplicatedBlockStats", &GetFsReplicatedBlockStatsRequestProto {}).await
    }

    pub async fn get_datanode_report(&self, kind: DatanodeReportTypeProto) -> Result<Vec<DatanodeInfoProto>> {
        let request = GetDatanodeReportRequestProto { r#type: kind as i32 };
        let response: GetDatanodeReportResponseProto = self.call("getDatanodeReport", &request).await?;
        Ok(response.di)
    }

    /// Returns whether the namenode is in safe mode after the action.
    pub async fn set_safe_mode(&self, action: SafeModeActionProto, checked: bool) -> Result<bool> {
        let request = SetSafeModeRequestProto { action: action as i32, checked: Some(checked) };
        let response: SetSafeModeResponseProto = self.call("setSafeMode", &request).await?;
        Ok(response.result)
    }

    pub async fn get_preferred_block_size(&self, path: &str) -> Result<u64> {
        let request = GetPreferredBlockSizeRequestProto { filename: path.to_string() };
        let response: GetPreferredBlockSizeResponseProto =
            self.call("getPreferredBlockSize", &request).await?;
        Ok(response.bsize)
    }

    pub async fn check_access(&self, path: &str, mode: FsActionProto) -> Result<()> {
        let request = CheckAccessRequestProto { path: path.to_string(), mode: mode as i32 };
        let _: CheckAccessResponseProto = self.call("checkAccess", &request).await?;
        Ok(())
    }

    pub async fn is_file_closed(&self, path: &str) -> Result<bool> {
        let request = IsFileClosedRequestProto { src: path.to_string() };
        let response: IsFileClosedResponseProto = self.call("isFileClosed", &request).await?;
        Ok(response.result)
    }

    // ---- namespace changes ----

    pub async fn mkdirs(&self, path: &str, permission: u16, create_parent: bool) -> Result<bool> {
        let request = MkdirsRequestProto {
            src: path.to_string(),
            masked: FsPermissionProto { perm: u32::from(permission) },
            create_parent,
            unmasked: Some(FsPermissionProto { perm: 0o777 }),
        };
        let response: MkdirsResponseProto = self.call("mkdirs", &request).await?;
        Ok(response.result)
    }

    pub async fn delete(&self, path: &str, recursive: bool) -> Result<bool> {
        let request = DeleteRequestProto { src: path.to_string(), recursive };
        let response: DeleteResponseProto = self.call("delete", &request).await?;
        Ok(response.result)
    }

    /// Old-style rename: false (no exception) for a missing source, an existing target
    /// file or a missing target parent; an existing target directory receives the source.
    pub async fn rename(&self, source: &str, target: &str) -> Result<bool> {
        let request = RenameRequestProto { src: source.to_string(), dst: target.to_string() };
        let response: RenameResponseProto = self.call("rename", &request).await?;
        Ok(response.result)
    }

    /// Rename that throws on failure and can overwrite the target.
    pub async fn rename2(
        &self,
        source: &str,
        target: &str,
        overwrite: bool,
        move_to_trash: bool,
    ) -> Result<()> {
        let request = Rename2RequestProto {
            src: source.to_string(),
            dst: target.to_string(),
            overwrite_dest: overwrite,
            move_to_trash: Some(move_to_trash),
        };
        let _: Rename2ResponseProto = self.call("rename2", &request).await?;
        Ok(())
    }

    pub async fn set_replication(&self, path: &str, replication: u16) -> Result<bool> {
        let request =
            SetReplicationRequestProto { src: path.to_string(), replication: u32::from(replication) };
        let response: SetReplicationResponseProto = self.call("setReplication", &request).await?;
        Ok(response.result)
    }

    pub async fn set_permission(&self, path: &str, permission: u16) -> Result<()> {
        let request = SetPermissionRequestProto {
            src: path.to_string(),
            permission: FsPermissionProto { perm: u32::from(permission) },
        };
        let _: SetPermissionResponseProto = self.call("setPermission", &request).await?;
        Ok(())
    }

    pub async fn set_owner(&self, path: &str, owner: Option<&str>, group: Option<&str>) -> Result<()> {
        let request = SetOwnerRequestProto {
            src: path.to_string(),
            username: owner.map(str::to_string),
            groupname: group.map(str::to_string),
        };
        let _: SetOwnerResponseProto = self.call("setOwner", &request).await?;
        Ok(())
    }

    /// Sets times in milliseconds; `None` leaves that time unchanged (-1 on the wire).
    pub async fn set_times(&self, path: &str, mtime_ms: Option<u64>, atime_ms: Option<u64>) -> Result<()> {
        let request = SetTimesRequestProto {
            src: path.to_string(),
            mtime: mtime_ms.unwrap_or(u64::MAX),
            atime: atime_ms.unwrap_or(u64::MAX),
        };
        let _: SetTimesResponseProto = self.call("setTimes", &request).await?;
        Ok(())
    }

    pub async fn concat(&self, target: &str, sources: &[String]) -> Result<()> {
        let request = ConcatRequestProto { trg: target.to_string(), srcs: sources.to_vec() };
        let _: ConcatResponseProto = self.call("concat", &request).await?;
        Ok(())
    }

    /// true: done; false: the last block is being recovered to the new length.
    pub async fn truncate(&self, path: &str, new_length: u64) -> Result<bool> {
        let request =
            TruncateRequestProto { src: path.to_string(), new_length, client_name: self.client_name.clone() };
        let response: TruncateResponseProto = self.call("truncate", &request).await?;
        Ok(response.result)
    }

    pub async fn recover_lease(&self, path: &str) -> Result<bool> {
        let request =
            RecoverLeaseRequestProto { src: path.to_string(), client_name: self.client_name.clone() };
        let response: RecoverLeaseResponseProto = self.call("recoverLease", &request).await?;
        Ok(response.result)
    }

    // ---- writing files ----

    /// Creates a file; returns its status (fileId, blocksize, replication).
    pub async fn create(&self, path: &str, options: &CreateOptions) -> Result<HdfsFileStatusProto> {
        let request = CreateRequestProto {
            src: path.to_string(),
            masked: FsPermissionProto { perm: u32::from(options.permission) },
            client_name: self.client_name.clone(),
            create_flag: options.flags,
            create_parent: options.create_parent,
            replication: u32::from(options.replication),
            block_size: options.block_size,
            crypto_protocol_version: vec![CryptoProtocolVersionProto::EncryptionZones as i32],
            unmasked: Some(FsPermissionProto { perm: 0o666 }),
            ec_policy_name: None,
            storage_policy: None,
        };
        let response: CreateResponseProto = self.call("create", &request).await?;
        response.fs.ok_or(DfsError::BadResponse { method: "create", missing: "the file status" })
    }

    /// Opens an existing file for append: the partial last block (if any) and the status.
    pub async fn append(&self, path: &str, flags: u32) -> Result<AppendResponseProto> {
        let request = AppendRequestProto {
            src: path.to_string(),
            client_name: self.client_name.clone(),
            flag: Some(flags),
        };
        self.call("append", &request).await
    }

    /// Allocates the next block, retrying while the namenode says the previous blocks
    /// are not replicated yet.
    pub async fn add_block(
        &self,
        path: &str,
        previous: Option<ExtendedBlockProto>,
        exclude: &[DatanodeInfoProto],
        file_id: u64,
    ) -> Result<LocatedBlockProto> {
        let request = AddBlockRequestProto {
            src: path.to_string(),
            client_name: self.client_name.clone(),
            previous,
            exclude_nodes: exclude.to_vec(),
            file_id: Some(file_id),
            favored_nodes: Vec::new(),
            flags: Vec::new(),
        };
        let mut delay = ADD_BLOCK_RETRY_FIRST_DELAY;
        let mut attempt = 1;
        loop {
            match self.call::<_, AddBlockResponseProto>("addBlock", &request).await {
                Ok(response) => return Ok(response.block),
                Err(e) if e.is_remote(exception::NOT_REPLICATED_YET) && attempt < ADD_BLOCK_ATTEMPTS_MAX => {
                    tracing::debug!(path, attempt, "addBlock: previous block not replicated yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn abandon_block(&self, block: &ExtendedBlockProto, path: &str, file_id: u64) -> Result<()> {
        let request = AbandonBlockRequestProto {
            b: block.clone(),
            src: path.to_string(),
            holder: self.client_name.clone(),
            file_id: Some(file_id),
        };
        let _: AbandonBlockResponseProto = self.call("abandonBlock", &request).await?;
        Ok(())
    }

    /// One complete() call: false while the last block lacks its minimum replicas.
    pub async fn complete(&self, path: &str, last: Option<ExtendedBlockProto>, file_id: u64) -> Result<bool> {
        let request = CompleteRequestProto {
            src: path.to_string(),
            client_name: self.client_name.clone(),
            last,
            file_id: Some(file_id),
        };
        let response: CompleteResponseProto = self.call("complete", &request).await?;
        Ok(response.result)
    }

    /// complete() until it answers true, backing off between attempts.
    pub async fn complete_with_retry(
        &self,
        path: &str,
        last: Option<ExtendedBlockProto>,
        file_id: u64,
    ) -> Result<()> {
        let mut delay = COMPLETE_RETRY_FIRST_DELAY;
        for attempt in 1..=COMPLETE_ATTEMPTS_MAX {
            if self.complete(path, last.clone(), file_id).await? {
                return Ok(());
            }
            tracing::debug!(path, attempt, "complete: last block not yet minimally replicated");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(COMPLETE_RETRY_DELAY_MAX);
        }
        Err(DfsError::CompleteTimeout { block_id: last.map_or(0, |b| b.block_id) })
    }

    /// Makes the bytes acknowledged so far visible to readers (hsync's namenode half).
    pub async fn fsync(&self, path: &str, file_id: u64, last_block_length: Option<u64>) -> Result<()> {
        let request = FsyncRequestProto {
            src: path.to_string(),
            client: self.client_name.clone(),
            last_block_length: Some(last_block_length.map_or(-1, |l| l as i64)),
            file_id: Some(file_id),
        };
        let _: FsyncResponseProto = self.call("fsync", &request).await?;
        Ok(())
    }

    /// A new generation stamp (and token) for reopening a block's pipeline.
    pub async fn update_block_for_pipeline(&self, block: &ExtendedBlockProto) -> Result<LocatedBlockProto> {
        let request = UpdateBlockForPipelineRequestProto {
            block: block.clone(),
            client_name: self.client_name.clone(),
        };
        let response: UpdateBlockForPipelineResponseProto =
            self.call("updateBlockForPipeline", &request).await?;
        Ok(response.block)
    }

    pub async fn update_pipeline(
        &self,
        old_block: &ExtendedBlockProto,
        new_block: &ExtendedBlockProto,
        nodes: &[DatanodeInfoProto],
        storage_ids: &[String],
    ) -> Result<()> {
        let request = UpdatePipelineRequestProto {
            client_name: self.client_name.clone(),
            old_block: old_block.clone(),
            new_block: new_block.clone(),
            new_nodes: nodes.iter().map(|n| n.id.clone()).collect(),
            storage_i_ds: storage_ids.to_vec(),
        };
        let _: UpdatePipelineResponseProto = self.call("updatePipeline", &request).await?;
        Ok(())
    }

    /// Tells the namenode a replica is corrupt (after a checksum error on read).
    pub async fn report_bad_blocks(&self, blocks: Vec<LocatedBlockProto>) -> Result<()> {
        let request = ReportBadBlocksRequestProto { blocks };
        let _: ReportBadBlocksResponseProto = self.call("reportBadBlocks", &request).await?;
        Ok(())
    }

    pub async fn renew_lease(&self) -> Result<()> {
        let request =
            RenewLeaseRequestProto { client_name: self.client_name.clone(), namespaces: Vec::new() };
        let _: RenewLeaseResponseProto = self.call("renewLease", &request).await?;
        Ok(())
    }

    /// How often leases are renewed while files are open (default [`LEASE_RENEW_INTERVAL`]);
    /// it must stay well under the namenode's lease limits.
    pub fn set_lease_renew_interval(&self, interval: Duration) {
        self.lease_renew_interval_ms.store(interval.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    fn lease_renew_interval(&self) -> Duration {
        Duration::from_millis(self.lease_renew_interval_ms.load(Ordering::Relaxed))
    }

    /// Registers an open-for-write file; the renewer task runs while any guard lives.
    pub fn lease_guard(&self) -> LeaseGuard {
        let namenode = self.myself.upgrade().expect("NamenodeClient lives in an Arc");
        let mut lease = self.lease.lock().expect("lease lock");
        lease.open_writers += 1;
        let running = lease.renewer.as_ref().is_some_and(|task| !task.is_finished());
        if !running {
            lease.renewer = Some(tokio::spawn(renew_leases(self.myself.clone())));
        }
        drop(lease);
        LeaseGuard { namenode }
    }
}

impl Drop for NamenodeClient {
    fn drop(&mut self) {
        if let Some(task) = self.lease.get_mut().ok().and_then(|l| l.renewer.take()) {
            task.abort();
        }
    }
}

async fn renew_leases(namenode: Weak<NamenodeClient>) {
    loop {
        let Some(interval) = namenode.upgrade().map(|n| n.lease_renew_interval()) else { return };
        tokio::time::sleep(interval).await;
        let Some(namenode) = namenode.upgrade() else { return };
        {
            let mut lease = namenode.lease.lock().expect("lease lock");
            if lease.open_writers == 0 {
                lease.renewer = None;
                return;
            }
        }
        if let Err(e) = namenode.renew_lease().await {
            tracing::warn!(error = %e, client = namenode.client_name, "renewLease failed; will retry");
        }
    }
}

/// Parameters of [`NamenodeClient::create`].
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub permission: u16,
    /// [`create_flag`] bits.
    pub flags: u32,
    pub create_parent: bool,
    pub replication: u16,
    pub block_size: u64,
}
