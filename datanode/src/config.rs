//! The datanode's settings, read once from the Hadoop-style configuration.

use std::path::PathBuf;
use std::time::Duration;

use ringfs_common::conf::{ConfError, Configuration};

use crate::engine::EngineKind;
use crate::limits::{READAHEAD_BYTES_MAX, XCEIVERS_MAX};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Conf(#[from] ConfError),
    #[error("{key}={value:?}: {reason}")]
    Invalid { key: &'static str, value: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct DataNodeConfig {
    /// `dfs.datanode.data.dir`: one volume per entry.
    pub data_dirs: Vec<PathBuf>,
    /// `dfs.datanode.address` (host:port; port 0 = any free port).
    pub xfer_bind: String,
    /// `dfs.datanode.ipc.address`.
    pub ipc_bind: String,
    /// `dfs.datanode.http.address`.
    pub http_bind: String,
    /// `dfs.datanode.hostname`: the name registered with the namenode.
    pub hostname: Option<String>,
    /// `dfs.datanode.io.engine`.
    pub engine: EngineKind,
    /// `dfs.datanode.uring.rings` (0 = one per core); read by the io_uring engine.
    pub uring_rings: usize,
    /// `dfs.datanode.synconclose`: fsync data and meta when finalizing.
    pub sync_on_close: bool,
    /// `dfs.heartbeat.interval` (seconds in the file).
    pub heartbeat_interval: Duration,
    /// `dfs.blockreport.intervalMsec`.
    pub block_report_interval: Duration,
    /// The namenode's RPC address.
    pub namenode_addr: String,
    /// `dfs.datanode.max.transfer.threads`.
    pub xceivers_max: usize,
    /// `ipc.server.listen.queue.size`: the listen backlog of the data and IPC ports
    /// (the kernel caps it at `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// `dfs.datanode.readahead.bytes`: OS readahead ahead of long reads (0 = none).
    pub readahead_bytes: u64,
    /// User named in the IPC connection context.
    pub user: String,
}

impl DataNodeConfig {
    pub fn from_conf(conf: &Configuration) -> Result<DataNodeConfig, ConfigError> {
        let data_dirs: Vec<PathBuf> =
            conf.get_list("dfs.datanode.data.dir").iter().map(|d| parse_data_dir(d)).collect();
        if data_dirs.is_empty() {
            return Err(invalid("dfs.datanode.data.dir", "", "no data directory"));
        }
        let engine_text = conf.get("dfs.datanode.io.engine").unwrap_or("auto");
        let engine = engine_text
            .parse::<EngineKind>()
            .map_err(|reason| invalid("dfs.datanode.io.engine", engine_text, &reason))?;
        let heartbeat_secs = conf.get_u64("dfs.heartbeat.interval")?;
        let heartbeat_interval = Duration::from_secs(heartbeat_secs.max(1));
        let report_ms = conf.get_u64("dfs.blockreport.intervalMsec")?;
        let block_report_interval =
            Duration::from_millis(report_ms.max(heartbeat_interval.as_millis() as u64));
        let xceivers_max = match conf.get("dfs.datanode.max.transfer.threads") {
            Some(_) => conf.get_u64("dfs.datanode.max.transfer.threads")? as usize,
            None => XCEIVERS_MAX,
        }
        .clamp(1, 64 * XCEIVERS_MAX);
        let user = std::env::var("HADOOP_USER_NAME")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "ringfs".to_string());
        Ok(DataNodeConfig {
            data_dirs,
            xfer_bind: bind_address(conf, "dfs.datanode.address", 9866),
            ipc_bind: bind_address(conf, "dfs.datanode.ipc.address", 9867),
            http_bind: bind_address(conf, "dfs.datanode.http.address", 9864),
            hostname: conf.get("dfs.datanode.hostname").map(String::from),
            engine,
            uring_rings: conf.get_u64("dfs.datanode.uring.rings")? as usize,
            sync_on_close: conf.get_bool("dfs.datanode.synconclose")?,
            heartbeat_interval,
            block_report_interval,
            namenode_addr: conf.namenode_address(),
            xceivers_max,
            listen_backlog: conf.get_u64("ipc.server.listen.queue.size")?.clamp(1, i32::MAX as u64) as u32,
            readahead_bytes: conf.get_u64("dfs.datanode.readahead.bytes")?.min(READAHEAD_BYTES_MAX),
            user,
        })
    }
}

fn invalid(key: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid { key, value: value.to_string(), reason: reason.to_string() }
}

/// `host:port`, with Hadoop's default port when only a host is given.
fn bind_address(conf: &Configuration, key: &str, default_port: u16) -> String {
    let value = conf.get(key).unwrap_or("0.0.0.0");
    if value.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
        value.to_string()
    } else {
        format!("{value}:{default_port}")
    }
}

/// Strips Hadoop's storage-type tag (`[DISK]`, `[SSD]`...) and `file://`.
fn parse_data_dir(entry: &str) -> PathBuf {
    let entry = entry.trim();
    let entry = match entry.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((_, path)) => path,
        None => entry,
    };
    PathBuf::from(entry.strip_prefix("file://").unwrap_or(entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hdfs_keys() {
        let mut conf = Configuration::new();
        conf.set("dfs.datanode.data.dir", "[DISK]file:///data/1, /data/2");
        conf.set("dfs.datanode.address", "127.0.0.1:0");
        conf.set("dfs.datanode.ipc.address", "127.0.0.1");
        conf.set("dfs.datanode.io.engine", "threads");
        conf.set("dfs.datanode.synconclose", "true");
        conf.set("fs.defaultFS", "hdfs://127.0.0.1:9000");
        let config = DataNodeConfig::from_conf(&conf).unwrap();
        assert_eq!(config.data_dirs, vec![PathBuf::from("/data/1"), PathBuf::from("/data/2")]);
        assert_eq!(config.xfer_bind, "127.0.0.1:0");
        assert_eq!(config.ipc_bind, "127.0.0.1:9867");
        assert_eq!(config.http_bind, "0.0.0.0:9864");
        assert_eq!(config.engine, EngineKind::Threads);
        assert!(config.sync_on_close);
        assert_eq!(config.namenode_addr, "127.0.0.1:9000");
        assert_eq!(config.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(config.xceivers_max, XCEIVERS_MAX);
    }

    #[test]
    fn rejects_unknown_engines() {
        let mut conf = Configuration::new();
        conf.set("dfs.datanode.io.engine", "epoll");
        assert!(matches!(DataNodeConfig::from_conf(&conf), Err(ConfigError::Invalid { .. })));
    }
}
