//! The namenode's settings, read once from the Hadoop-style configuration with HDFS's
//! key names and defaults.

use std::path::PathBuf;
use std::time::Duration;

use ringfs_common::conf::{ConfError, Configuration};

/// Defaults of keys that `ringfs_common::conf::DEFAULTS` does not carry.
pub mod defaults {
    /// dfs.namenode.fs-limits.min-block-size
    pub const MIN_BLOCK_SIZE: u64 = 1024 * 1024;
    /// dfs.namenode.fs-limits.max-blocks-per-file
    pub const MAX_BLOCKS_PER_FILE: u64 = 10_000;
    /// dfs.namenode.fs-limits.max-directory-items
    pub const MAX_DIRECTORY_ITEMS: u64 = 1024 * 1024;
    /// dfs.namenode.accesstime.precision (ms)
    pub const ACCESS_TIME_PRECISION_MS: u64 = 3_600_000;
    /// dfs.block.invalidate.limit (blocks per heartbeat reply)
    pub const INVALIDATE_LIMIT: u64 = 1000;
    /// dfs.namenode.reconstruction.pending.timeout-sec
    pub const RECONSTRUCTION_PENDING_TIMEOUT_S: u64 = 300;
}

#[derive(Debug, Clone)]
pub struct NameNodeConfig {
    pub name_dir: PathBuf,
    pub rpc_address: String,
    pub replication: u16,
    pub replication_max: u16,
    pub replication_min: u16,
    pub blocksize: u64,
    pub min_block_size: u64,
    pub max_blocks_per_file: u64,
    pub max_component_length: usize,
    pub max_directory_items: usize,
    pub bytes_per_checksum: u32,
    pub write_packet_size: u32,
    pub file_buffer_size: u32,
    pub trash_interval_min: u64,
    pub heartbeat_interval: Duration,
    pub heartbeat_recheck: Duration,
    pub permissions_enabled: bool,
    pub supergroup: String,
    pub safemode_threshold_pct: f64,
    pub safemode_extension: Duration,
    pub safemode_min_datanodes: u64,
    pub checkpoint_txns: u64,
    pub checkpoint_period: Duration,
    pub ls_limit: usize,
    pub lease_soft_limit: Duration,
    pub lease_hard_limit: Duration,
    pub redundancy_interval: Duration,
    pub replication_max_streams: usize,
    pub invalidate_limit: usize,
    pub reconstruction_pending_timeout: Duration,
    pub access_time_precision_ms: u64,
    pub topology_script: Option<String>,
    pub topology_table: Option<String>,
}

fn u64_or(conf: &Configuration, key: &str, default: u64) -> Result<u64, ConfError> {
    if conf.get(key).is_some() {
        conf.get_u64(key)
    } else {
        Ok(default)
    }
}

fn u16_key(conf: &Configuration, key: &str) -> Result<u16, ConfError> {
    let value = conf.get_u64(key)?;
    u16::try_from(value).map_err(|_| ConfError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        expected: "integer up to 65535",
    })
}

fn u32_key(conf: &Configuration, key: &str) -> Result<u32, ConfError> {
    let value = conf.get_u64(key)?;
    u32::try_from(value).map_err(|_| ConfError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        expected: "32-bit integer",
    })
}

/// `file:///a/b` or `/a/b`; the first of a comma-separated list.
fn local_dir(value: &str) -> PathBuf {
    let first = value.split(',').next().unwrap_or("").trim();
    let path = first.strip_prefix("file://").unwrap_or(first);
    PathBuf::from(path)
}

impl NameNodeConfig {
    pub fn from_conf(conf: &Configuration) -> Result<NameNodeConfig, ConfError> {
        let heartbeat_interval = Duration::from_secs(conf.get_u64("dfs.heartbeat.interval")?.max(1));
        let config = NameNodeConfig {
            name_dir: local_dir(conf.get_str("dfs.namenode.name.dir")),
            rpc_address: conf.namenode_address(),
            replication: u16_key(conf, "dfs.replication")?,
            replication_max: u16_key(conf, "dfs.replication.max")?,
            replication_min: u16_key(conf, "dfs.namenode.replication.min")?.max(1),
            blocksize: conf.get_u64("dfs.blocksize")?,
            min_block_size: u64_or(conf, "dfs.namenode.fs-limits.min-block-size", defaults::MIN_BLOCK_SIZE)?,
            max_blocks_per_file: u64_or(
                conf,
                "dfs.namenode.fs-limits.max-blocks-per-file",
                defaults::MAX_BLOCKS_PER_FILE,
            )?,
            max_component_length: conf.get_u64("dfs.namenode.fs-limits.max-component-length")? as usize,
            max_directory_items: u64_or(
                conf,
                "dfs.namenode.fs-limits.max-directory-items",
                defaults::MAX_DIRECTORY_ITEMS,
            )? as usize,
            bytes_per_checksum: u32_key(conf, "dfs.bytes-per-checksum")?,
            write_packet_size: u32_key(conf, "dfs.client-write-packet-size")?,
            file_buffer_size: u32_key(conf, "io.file.buffer.size")?,
            trash_interval_min: conf.get_u64("fs.trash.interval")?,
            heartbeat_interval,
            heartbeat_recheck: Duration::from_millis(
                conf.get_u64("dfs.namenode.heartbeat.recheck-interval")?,
            ),
            permissions_enabled: conf.get_bool("dfs.permissions.enabled")?,
            supergroup: conf.get_str("dfs.permissions.superusergroup").to_string(),
            safemode_threshold_pct: conf.get_f64("dfs.namenode.safemode.threshold-pct")?,
            safemode_extension: Duration::from_millis(conf.get_u64("dfs.namenode.safemode.extension")?),
            safemode_min_datanodes: conf.get_u64("dfs.namenode.safemode.min.datanodes")?,
            checkpoint_txns: conf.get_u64("dfs.namenode.checkpoint.txns")?.max(1),
            checkpoint_period: Duration::from_secs(conf.get_u64("dfs.namenode.checkpoint.period")?.max(1)),
            ls_limit: (conf.get_u64("dfs.ls.limit")? as usize).max(1),
            lease_soft_limit: Duration::from_millis(conf.get_u64("dfs.namenode.lease.soft-limit")?),
            lease_hard_limit: Duration::from_secs(conf.get_u64("dfs.namenode.lease.hard-limit")?),
            redundancy_interval: Duration::from_secs(
                conf.get_u64("dfs.namenode.redundancy.interval.seconds")?.max(1),
            ),
            replication_max_streams: (conf.get_u64("dfs.namenode.replication.max-streams")? as usize).max(1),
            invalidate_limit: (u64_or(conf, "dfs.block.invalidate.limit", defaults::INVALIDATE_LIMIT)?
                as usize)
                .max(1),
            reconstruction_pending_timeout: Duration::from_secs(u64_or(
                conf,
                "dfs.namenode.reconstruction.pending.timeout-sec",
                defaults::RECONSTRUCTION_PENDING_TIMEOUT_S,
            )?),
            access_time_precision_ms: u64_or(
                conf,
                "dfs.namenode.accesstime.precision",
                defaults::ACCESS_TIME_PRECISION_MS,
            )?,
            topology_script: conf.get("net.topology.script.file.name").map(String::from),
            topology_table: conf.get("net.topology.table.file.name").map(String::from),
        };
        Ok(config)
    }

    /// HDFS's dead-node rule: 2 x recheck interval + 10 x heartbeat interval.
    pub fn heartbeat_expiry(&self) -> Duration {
        2 * self.heartbeat_recheck + 10 * self.heartbeat_interval
    }

    /// The defaults, for tests.
    pub fn for_tests(name_dir: PathBuf) -> NameNodeConfig {
        let mut conf = Configuration::new();
        conf.set("dfs.namenode.name.dir", name_dir.display().to_string());
        NameNodeConfig::from_conf(&conf).expect("defaults parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hdfs_defaults_and_overrides() {
        let mut conf = Configuration::new();
        conf.set("dfs.namenode.name.dir", "file:///tmp/nn1,/tmp/nn2");
        conf.set("dfs.replication", "1");
        let config = NameNodeConfig::from_conf(&conf).unwrap();
        assert_eq!(config.name_dir, PathBuf::from("/tmp/nn1"));
        assert_eq!(config.replication, 1);
        assert_eq!(config.blocksize, 134_217_728);
        assert_eq!(config.ls_limit, 1000);
        assert!(config.permissions_enabled);
        assert_eq!(config.supergroup, "supergroup");
        // 2 x 300 s + 10 x 3 s, as HDFS computes it.
        assert_eq!(config.heartbeat_expiry(), Duration::from_secs(630));
        conf.set("dfs.replication", "70000");
        assert!(NameNodeConfig::from_conf(&conf).is_err());
    }
}
