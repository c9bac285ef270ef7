//! The file-level API: [`DfsClient`] opens files for read and write and wraps the
//! namespace operations, resolving paths the way Java's DistributedFileSystem does.

use std::sync::Arc;

use ringfs_common::checksum::{ChecksumKind, DataChecksum, FileChecksum};
use ringfs_common::conf::Configuration;
use ringfs_common::dtp::OpRequest;
use ringfs_common::proto::hdfs::{
    BaseHeaderProto, BlockChecksumOptionsProto, BlockChecksumTypeProto, FsServerDefaultsProto,
    LocatedBlockProto, LocatedBlocksProto, OpBlockChecksumProto,
};

use crate::datanode::{self, token_or_empty, xfer_addr, PeerCache};
use crate::error::{DfsError, Result};
use crate::file_reader::FileReader;
use crate::file_writer::{FileWriter, WriterStart};
use crate::namenode::{create_flag, default_user, CreateOptions, NamenodeClient};
use crate::status::{ContentSummary, FileStatus};

/// Largest length asked of getBlockLocations: "every block", as hdfs-native asks.
const WHOLE_FILE_LENGTH: u64 = i64::MAX as u64;

/// Default namenode port of an `hdfs://host` URI without one.
pub const NAMENODE_PORT_DEFAULT: u16 = 8020;

/// Default permission of new files before the umask (Java: 0666 & ~022).
pub const FILE_PERMISSION_DEFAULT: u16 = 0o644;
/// Default permission of new directories before the umask (Java: 0777 & ~022).
pub const DIR_PERMISSION_DEFAULT: u16 = 0o755;

/// Client settings; [`ClientConfig::from_conf`] reads them as Java's DFSClient does.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the namenode.
    pub namenode_addr: String,
    pub user: String,
    /// Replication of new files; `None`: the namenode's default.
    pub replication: Option<u16>,
    /// Block size of new files; `None`: the namenode's default.
    pub block_size: Option<u64>,
    /// Checksum of written data; `None`: the namenode's default.
    pub checksum: Option<DataChecksum>,
    /// Verify chunk checksums on read (`dfs.client.read.shortcircuit.skip.checksum` off).
    pub verify_checksum: bool,
    /// Base of relative paths; `None`: `/user/<user>`.
    pub working_dir: Option<String>,
    /// How often leases of files open for write are renewed.
    pub lease_renew_interval: std::time::Duration,
}

impl ClientConfig {
    /// Settings for the namenode at `addr`, everything else defaulted.
    pub fn new(namenode_addr: &str) -> ClientConfig {
        ClientConfig {
            namenode_addr: namenode_addr.to_string(),
            user: default_user(),
            replication: None,
            block_size: None,
            checksum: None,
            verify_checksum: true,
            working_dir: None,
            lease_renew_interval: crate::namenode::LEASE_RENEW_INTERVAL,
        }
    }

    /// Settings from a Hadoop configuration: fs.defaultFS (or dfs.namenode.rpc-address),
    /// dfs.replication, dfs.blocksize, dfs.checksum.type, dfs.bytes-per-checksum.
    pub fn from_conf(conf: &Configuration) -> Result<ClientConfig> {
        let bad = |key: &str, reason: String| DfsError::InvalidPath { path: key.to_string(), reason };
        let mut config = ClientConfig::new(&conf.namenode_address());
        let replication =
            conf.get_u64("dfs.replication").map_err(|e| bad("dfs.replication", e.to_string()))?;
        config.replication =
            Some(u16::try_from(replication).map_err(|_| bad("dfs.replication", "too large".into()))?);
        config.block_size =
            Some(conf.get_u64("dfs.blocksize").map_err(|e| bad("dfs.blocksize", e.to_string()))?);
        let kind = match conf.get_str("dfs.checksum.type").to_ascii_uppercase().as_str() {
            "CRC32" => ChecksumKind::Crc32,
            "NULL" => ChecksumKind::Null,
            _ => ChecksumKind::Crc32c,
        };
        let bytes_per_checksum = conf
            .get_u64("dfs.bytes-per-checksum")
            .map_err(|e| bad("dfs.bytes-per-checksum", e.to_string()))?;
        let checksum = DataChecksum::new(kind, bytes_per_checksum.min(u64::from(u32::MAX)) as u32)
            .map_err(|e| bad("dfs.bytes-per-checksum", e.to_string()))?;
        config.checksum = Some(checksum);
        Ok(config)
    }
}

pub(crate) struct ClientInner {
    pub(crate) namenode: Arc<NamenodeClient>,
    pub(crate) config: ClientConfig,
    pub(crate) peer_cache: Arc<PeerCache>,
    working_dir: String,
}

/// A connection to one HDFS namespace.
#[derive(Clone)]
pub struct DfsClient {
    inner: Arc<ClientInner>,
}

/// What [`DfsClient::create_with`] creates.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub overwrite: bool,
    pub replication: Option<u16>,
    pub block_size: Option<u64>,
    /// Permission before the namenode's umask; default 0644.
    pub permission: Option<u16>,
    /// Create missing parent directories (Java's `create` does).
    pub no_create_parent: bool,
}

impl DfsClient {
    pub async fn connect(config: ClientConfig) -> Result<DfsClient> {
        let namenode = NamenodeClient::connect(&config.namenode_addr, &config.user).await?;
        namenode.set_lease_renew_interval(config.lease_renew_interval);
        let working_dir = config.working_dir.clone().unwrap_or_else(|| format!("/user/{}", config.user));
        let peer_cache = Arc::new(PeerCache::default());
        Ok(DfsClient { inner: Arc::new(ClientInner { namenode, config, peer_cache, working_dir }) })
    }

    /// The typed namenode proxy, for calls this API does not wrap.
    pub fn namenode(&self) -> &Arc<NamenodeClient> {
        &self.inner.namenode
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub fn user(&self) -> &str {
        &self.inner.config.user
    }

    /// `/user/<user>` unless configured otherwise.
    pub fn working_dir(&self) -> &str {
        &self.inner.working_dir
    }

    /// Turns a path or `hdfs://authority/path` URI into a normalised absolute path;
    /// relative paths are taken from the working directory.
    pub fn resolve(&self, path: &str) -> Result<String> {
        resolve_path(&self.inner.working_dir, path)
    }

    pub async fn server_defaults(&self) -> Result<FsServerDefaultsProto> {
        self.inner.namenode.get_server_defaults().await
    }

    // ---- namespace ----

    /// The status of `path`, `None` if missing.
    pub async fn get_file_info(&self, path: &str) -> Result<Option<FileStatus>> {
        self.inner.namenode.get_file_info(&self.resolve(path)?).await
    }

    /// The status of `path`, or [`DfsError::NotFound`].
    pub async fn status(&self, path: &str) -> Result<FileStatus> {
        self.inner.namenode.stat(&self.resolve(path)?).await
    }

    pub async fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.get_file_info(path).await?.is_some())
    }

    /// The entries of a directory (all pages), or the file itself.
    pub async fn list(&self, path: &str) -> Result<Vec<FileStatus>> {
        let path = self.resolve(path)?;
        self.inner.namenode.get_listing(&path).await?.ok_or(DfsError::NotFound { path })
    }

    /// Creates a directory and its missing parents (permission before umask, default 0755).
    pub async fn mkdirs(&self, path: &str, permission: Option<u16>) -> Result<bool> {
        let path = self.resolve(path)?;
        self.inner.namenode.mkdirs(&path, permission.unwrap_or(DIR_PERMISSION_DEFAULT), true).await
    }

    pub async fn delete(&self, path: &str, recursive: bool) -> Result<bool> {
        self.inner.namenode.delete(&self.resolve(path)?, recursive).await
    }

    /// Old-style rename (false when it cannot be done; into an existing directory).
    pub async fn rename(&self, source: &str, target: &str) -> Result<bool> {
        self.inner.namenode.rename(&self.resolve(source)?, &self.resolve(target)?).await
    }

    /// Rename that fails loudly and may overwrite.
    pub async fn rename2(&self, source: &str, target: &str, overwrite: bool) -> Result<()> {
        self.inner.namenode.rename2(&self.resolve(source)?, &self.resolve(target)?, overwrite, false).await
    }

    pub async fn set_replication(&self, path: &str, replication: u16) -> Result<bool> {
        self.inner.namenode.set_replication(&self.resolve(path)?, replication).await
    }

    pub async fn set_permission(&self, path: &str, permission: u16) -> Result<()> {
        self.inner.namenode.set_permission(&self.resolve(path)?, permission).await
    }

    pub async fn set_owner(&self, path: &str, owner: Option<&str>, group: Option<&str>) -> Result<()> {
        self.inner.namenode.set_owner(&self.resolve(path)?, owner, group).await
    }

    pub async fn set_times(&self, path: &str, mtime_ms: Option<u64>, atime_ms: Option<u64>) -> Result<()> {
        self.inner.namenode.set_times(&self.resolve(path)?, mtime_ms, atime_ms).await
    }

    pub async fn content_summary(&self, path: &str) -> Result<ContentSummary> {
        self.inner.namenode.get_content_summary(&self.resolve(path)?).await
    }

    /// true: truncated; false: the last block is being recovered to the new length.
    pub async fn truncate(&self, path: &str, new_length: u64) -> Result<bool> {
        self.inner.namenode.truncate(&self.resolve(path)?, new_length).await
    }

    pub async fn concat(&self, target: &str, sources: &[&str]) -> Result<()> {
        let sources = sources.iter().map(|s| self.resolve(s)).collect::<Result<Vec<_>>>()?;
        self.inner.namenode.concat(&self.resolve(target)?, &sources).await
    }

    // ---- data ----

    /// Creates (or with `overwrite` replaces) a file; `None` takes the configured or
    /// namenode default.
    pub async fn create(
        &self,
        path: &str,
        overwrite: bool,
        replication: Option<u16>,
        block_size: Option<u64>,
    ) -> Result<FileWriter> {
        let options = WriteOptions { overwrite, replication, block_size, ..WriteOptions::default() };
        self.create_with(path, &options).await
    }

    pub async fn create_with(&self, path: &str, options: &WriteOptions) -> Result<FileWriter> {
        let path = self.resolve(path)?;
        let config = &self.inner.config;
        let defaults = self.inner.namenode.get_server_defaults().await?;
        let replication = options.replication.or(config.replication).unwrap_or(defaults.replication as u16);
        let block_size = options.block_size.or(config.block_size).unwrap_or(defaults.block_size);
        let checksum = self.write_checksum(&defaults)?;
        if block_size == 0 || !block_size.is_multiple_of(u64::from(checksum.bytes_per_checksum)) {
            return Err(DfsError::InvalidPath {
                path,
                reason: format!(
                    "block size {block_size} is not a positive multiple of bytes per checksum {}",
                    checksum.bytes_per_checksum
                ),
            });
        }
        let mut flags = create_flag::CREATE;
        if options.overwrite {
            flags |= create_flag::OVERWRITE;
        }
        let create = CreateOptions {
            permission: options.permission.unwrap_or(FILE_PERMISSION_DEFAULT),
            flags,
            create_parent: !options.no_create_parent,
            replication,
            block_size,
        };
        let status = self.inner.namenode.create(&path, &create).await?;
        let start = WriterStart {
            path,
            file_id: status.file_id.unwrap_or(0),
            block_size: status.blocksize.filter(|b| *b > 0).unwrap_or(block_size),
            checksum,
            length: 0,
            append_block: None,
            previous: None,
        };
        Ok(FileWriter::new(Arc::clone(&self.inner), start))
    }

    fn write_checksum(&self, defaults: &FsServerDefaultsProto) -> Result<DataChecksum> {
        if let Some(checksum) = self.inner.config.checksum {
            return Ok(checksum);
        }
        let kind = defaults.checksum_type.and_then(ChecksumKind::from_proto).unwrap_or(ChecksumKind::Crc32c);
        DataChecksum::new(kind, defaults.bytes_per_checksum)
            .map_err(|e| DfsError::InvalidPath { path: "server defaults".to_string(), reason: e.to_string() })
    }

    /// Opens an existing file to append to it.
    pub async fn append(&self, path: &str) -> Result<FileWriter> {
        self.append_with(path, false).await
    }

    /// Opens an existing file to append to it; with `new_block` the appended bytes start
    /// a new block instead of filling the last one (CreateFlag.NEW_BLOCK, `-appendToFile -n`).
    pub async fn append_with(&self, path: &str, new_block: bool) -> Result<FileWriter> {
        let path = self.resolve(path)?;
        let defaults = self.inner.namenode.get_server_defaults().await?;
        let mut flags = create_flag::APPEND;
        if new_block {
            flags |= create_flag::NEW_BLOCK;
        }
        let response = self.inner.namenode.append(&path, flags).await?;
        let status = match response.stat {
            Some(stat) => FileStatus::from_proto(&stat, &path),
            None => self.inner.namenode.stat(&path).await?,
        };
        // The checksum of existing data decides; a new block uses the configured one.
        let checksum = self.write_checksum(&defaults)?;
        let previous = if response.block.is_none() { self.last_block(&path).await? } else { None };
        let start = WriterStart {
            path,
            file_id: status.file_id,
            block_size: status.block_size.max(1),
            checksum,
            length: status.length,
            append_block: response.block,
            previous,
        };
        Ok(FileWriter::new(Arc::clone(&self.inner), start))
    }

    /// The last complete block of a file, passed as `previous` to its next addBlock.
    async fn last_block(&self, path: &str) -> Result<Option<ringfs_common::proto::hdfs::ExtendedBlockProto>> {
        let located = self.inner.namenode.get_block_locations(path, 0, WHOLE_FILE_LENGTH).await?;
        Ok(located.and_then(|l| l.last_block.or_else(|| l.blocks.last().cloned())).map(|b| b.b))
    }

    /// Opens a file for read.
    pub async fn open(&self, path: &str) -> Result<FileReader> {
        let path = self.resolve(path)?;
        let located = self.block_locations(&path).await?;
        Ok(FileReader::new(Arc::clone(&self.inner), path, located))
    }

    async fn block_locations(&self, path: &str) -> Result<LocatedBlocksProto> {
        self.inner
            .namenode
            .get_block_locations(path, 0, WHOLE_FILE_LENGTH)
            .await?
            .ok_or_else(|| DfsError::NotFound { path: path.to_string() })
    }

    /// The whole file, read into memory.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        let mut reader = self.open(path).await?;
        let mut out = Vec::with_capacity(reader.len() as usize);
        reader.read_to_end(&mut out).await?;
        Ok(out)
    }

    /// Creates or replaces a file with `data`.
    pub async fn write_file(&self, path: &str, data: &[u8]) -> Result<()> {
        let mut writer = self.create(path, true, None, None).await?;
        writer.write_all(data).await?;
        writer.close().await
    }

    /// The MD5-of-MD5-of-CRC checksum `hadoop fs -checksum` prints, from each block's
    /// BLOCK_CHECKSUM. An empty file gets Java's fixed answer: MD5-of-0MD5-of-0CRC32
    /// over 32 zero bytes ("the magic entry that matches what previous hdfs versions
    /// return").
    pub async fn file_checksum(&self, path: &str) -> Result<FileChecksum> {
        let path = self.resolve(path)?;
        let located = self.block_locations(&path).await?;
        let blocks: Vec<&LocatedBlockProto> = located
            .blocks
            .iter()
            .chain(located.last_block.iter())
            .filter(|b| b.b.num_bytes.unwrap_or(0) > 0)
            .fold(Vec::new(), |mut acc, b| {
                if !acc.iter().any(|a: &&LocatedBlockProto| a.b.block_id == b.b.block_id) {
                    acc.push(b);
                }
                acc
            });
        if blocks.is_empty() {
            return Ok(empty_file_checksum());
        }
        let mut md5s = Vec::with_capacity(blocks.len());
        let mut first: Option<(u32, u64, ChecksumKind)> = None;
        for block in &blocks {
            let (bytes_per_crc, crc_per_block, kind, md5) = self.block_checksum(block).await?;
            match first {
                None => first = Some((bytes_per_crc, crc_per_block, kind)),
                Some((bpc, _, first_kind)) if bpc != bytes_per_crc || first_kind != kind => {
                    return Err(DfsError::InvalidPath {
                        path,
                        reason: "blocks have different checksum types or chunk sizes (MIXED)".to_string(),
                    });
                }
                Some(_) => {}
            }
            md5s.push(md5);
        }
        let (bytes_per_crc, crc_per_block, kind) = first.expect("at least one block");
        let crc_per_block = if blocks.len() > 1 { crc_per_block } else { 0 };
        Ok(FileChecksum::combine(bytes_per_crc, crc_per_block, kind, &md5s))
    }

    async fn block_checksum(&self, block: &LocatedBlockProto) -> Result<(u32, u64, ChecksumKind, [u8; 16])> {
        let token = token_or_empty(Some(&block.block_token));
        let mut last_error = None;
        let mut tried = Vec::new();
        for node in &block.locs {
            let addr = xfer_addr(node);
            match self.block_checksum_at(&addr, block, &token).await {
                Ok(result) => return Ok(result),
                Err(e) if e.is_datanode_failure() => {
                    tracing::warn!(block = block.b.block_id, node = %addr, error = %e, "BLOCK_CHECKSUM failed");
                    tried.push(addr);
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(DfsError::BlockUnavailable {
            block_id: block.b.block_id,
            tried,
            last: Box::new(last_error.unwrap_or(DfsError::Pipeline {
                block_id: block.b.block_id,
                reason: "the block has no locations".to_string(),
            })),
        })
    }

    async fn block_checksum_at(
        &self,
        addr: &str,
        block: &LocatedBlockProto,
        token: &ringfs_common::proto::common::TokenProto,
    ) -> Result<(u32, u64, ChecksumKind, [u8; 16])> {
        let (mut reader, mut writer) = datanode::connect(addr).await?;
        let op = OpBlockChecksumProto {
            header: BaseHeaderProto { block: block.b.clone(), token: Some(token.clone()), trace_info: None },
            block_checksum_options: Some(BlockChecksumOptionsProto {
                block_checksum_type: Some(BlockChecksumTypeProto::Md5crc as i32),
                stripe_length: None,
            }),
        };
        writer.send_op(&OpRequest::BlockChecksum(op)).await?;
        let response = reader.read_op_response("BLOCK_CHECKSUM").await?;
        writer.shutdown().await;
        let bad =
            |reason: &str| DfsError::DatanodeSequence { node: addr.to_string(), reason: reason.to_string() };
        let checksum =
            response.checksum_response.ok_or_else(|| bad("BLOCK_CHECKSUM answer lacks checksumResponse"))?;
        let md5: [u8; 16] = checksum
            .block_checksum
            .as_ref()
            .try_into()
            .map_err(|_| bad("block checksum is not a 16-byte MD5"))?;
        // Java assumes CRC32 when the datanode does not say.
        let kind = match checksum.crc_type {
            Some(t) => ChecksumKind::from_proto(t).ok_or_else(|| bad("unknown crcType"))?,
            None => ChecksumKind::Crc32,
        };
        Ok((checksum.bytes_per_crc, checksum.crc_per_block, kind, md5))
    }
}

/// What Java's FileChecksumHelper returns for a file without data: MD5 of 32 zero
/// bytes, reported as CRC32 with zero bytes per CRC.
pub fn empty_file_checksum() -> FileChecksum {
    const ZERO_BYTES: usize = 32;
    let md5 = ringfs_common::checksum::block_checksum_md5(&[0u8; ZERO_BYTES]);
    FileChecksum { bytes_per_crc: 0, crc_per_block: 0, md5, kind: ChecksumKind::Crc32 }
}

/// Resolves `path` (absolute, relative to `working_dir`, or an `hdfs://` / `viewfs`-less
/// URI) to a normalised absolute path; `.` and `..` are folded as java.net.URI does.
pub fn resolve_path(working_dir: &str, path: &str) -> Result<String> {
    let invalid = |reason: &str| DfsError::InvalidPath { path: path.to_string(), reason: reason.to_string() };
    let without_scheme = if let Some(rest) = path.strip_prefix("hdfs://") {
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    } else if let Some(rest) = path.strip_prefix("hdfs:") {
        rest
    } else if path.contains("://") {
        return Err(invalid("only hdfs:// paths are supported"));
    } else {
        path
    };
    if without_scheme.is_empty() {
        return Err(invalid("Can not create a Path from an empty string"));
    }
    let joined = if without_scheme.starts_with('/') {
        without_scheme.to_string()
    } else {
        format!("{working_dir}/{without_scheme}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    Ok(ringfs_common::path::join(&parts))
}

/// The `host:port` of an `hdfs://host[:port]/...` URI, `None` for plain paths.
pub fn uri_authority(path: &str) -> Option<String> {
    let rest = path.strip_prefix("hdfs://")?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return None;
    }
    Some(if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:{NAMENODE_PORT_DEFAULT}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_like_java() {
        let wd = "/user/alice";
        assert_eq!(resolve_path(wd, "/a/b/").unwrap(), "/a/b");
        assert_eq!(resolve_path(wd, "x").unwrap(), "/user/alice/x");
        assert_eq!(resolve_path(wd, ".").unwrap(), "/user/alice");
        assert_eq!(resolve_path(wd, "../bob/y").unwrap(), "/user/bob/y");
        assert_eq!(resolve_path(wd, "hdfs://nn:9000/p/q").unwrap(), "/p/q");
        assert_eq!(resolve_path(wd, "hdfs://nn:9000").unwrap(), "/");
        assert_eq!(resolve_path(wd, "/..").unwrap(), "/");
        assert!(resolve_path(wd, "s3a://bucket/x").is_err());
        assert!(resolve_path(wd, "").is_err());
    }

    #[test]
    fn empty_file_checksum_is_javas_magic_entry() {
        let sum = empty_file_checksum();
        assert_eq!(sum.algorithm_name(), "MD5-of-0MD5-of-0CRC32");
        assert_eq!(sum.to_hex(), "00000000000000000000000070bc8f4b72a86921468bf8e8441dce51");
    }

    #[test]
    fn authorities() {
        assert_eq!(uri_authority("hdfs://nn:9000/p").as_deref(), Some("nn:9000"));
        assert_eq!(uri_authority("hdfs://nn/p").as_deref(), Some("nn:8020"));
        assert_eq!(uri_authority("/p"), None);
    }
}
