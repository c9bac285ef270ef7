//! An in-process cluster for the client's end-to-end tests: the real ringfs namenode
//! and datanodes (library crates), on loopback with free ports and a private directory.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ringfs_client::{ClientConfig, DfsClient, NamenodeClient};
use ringfs_common::conf::Configuration;
use ringfs_common::proto::hdfs::{DatanodeReportTypeProto, SafeModeActionProto};
use ringfs_datanode::DataNode;
use ringfs_namenode::{NameNode, NameNodeConfig};

/// How long the cluster may take to have every datanode live and safe mode off.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

static NEXT_CLUSTER: AtomicUsize = AtomicUsize::new(0);

pub struct MiniCluster {
    pub addr: String,
    pub dir: PathBuf,
    pub block_size: u64,
    namenode: Option<NameNode>,
    datanodes: Vec<Option<DataNode>>,
    data_dirs: Vec<PathBuf>,
    conf: Configuration,
}

impl MiniCluster {
    /// Formats and starts a namenode and `datanodes` datanodes; returns once all are
    /// live and safe mode is off.
    pub async fn start(datanodes: usize, block_size: u64) -> MiniCluster {
        MiniCluster::start_with(datanodes, block_size, &[]).await
    }

    /// As [`MiniCluster::start`], with extra configuration for every server.
    pub async fn start_with(datanodes: usize, block_size: u64, settings: &[(&str, &str)]) -> MiniCluster {
        // RUST_LOG=ringfs_client=debug shows what the client and servers did.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        let index = NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ringfs-client-test-{}-{index}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        let name_dir = dir.join("name");
        let mut conf = Configuration::new();
        conf.set("dfs.namenode.name.dir", name_dir.display().to_string());
        conf.set("dfs.namenode.rpc-address", "127.0.0.1:0");
        conf.set("dfs.namenode.http-address", "127.0.0.1:0");
        conf.set("dfs.namenode.safemode.extension", "0");
        conf.set("dfs.namenode.fs-limits.min-block-size", "4096");
        conf.set("dfs.replication", datanodes.min(3).to_string());
        conf.set("dfs.blocksize", block_size.to_string());
        conf.set("dfs.heartbeat.interval", "1");
        for (key, value) in settings {
            conf.set(key, *value);
        }
        let config = NameNodeConfig::from_conf(&conf).expect("namenode configuration");
        let user = ringfs_client::default_user();
        ringfs_namenode::format(&name_dir, None, false, &user, "supergroup").expect("format the namenode");
        let namenode = NameNode::start(config).await.expect("start the namenode");
        let addr = namenode.rpc_address().to_string();
        conf.set("dfs.namenode.rpc-address", addr.clone());
        conf.set("fs.defaultFS", format!("hdfs://{addr}"));
        let mut cluster = MiniCluster {
            addr,
            dir: dir.clone(),
            block_size,
            namenode: Some(namenode),
            datanodes: Vec::new(),
            data_dirs: Vec::new(),
            conf,
        };
        for i in 0..datanodes {
            let data_dir = dir.join(format!("data{i}"));
            cluster.data_dirs.push(data_dir);
            let datanode = cluster.start_datanode(i).await;
            cluster.datanodes.push(Some(datanode));
        }
        cluster.wait_ready(datanodes).await;
        cluster
    }

    async fn start_datanode(&self, index: usize) -> DataNode {
        let mut conf = self.conf.clone();
        conf.set("dfs.datanode.data.dir", self.data_dirs[index].display().to_string());
        conf.set("dfs.datanode.address", "127.0.0.1:0");
        conf.set("dfs.datanode.ipc.address", "127.0.0.1:0");
        conf.set("dfs.datanode.http.address", "127.0.0.1:0");
        DataNode::start(&conf).await.expect("start a datanode")
    }

    async fn wait_ready(&self, datanodes: usize) {
        let namenode =
            NamenodeClient::connect(&self.addr, &ringfs_client::default_user()).await.expect("connect");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let live = namenode.get_datanode_report(DatanodeReportTypeProto::Live).await.expect("report");
            let safe =
                namenode.set_safe_mode(SafeModeActionProto::SafemodeGet, false).await.expect("safemode");
            if live.len() == datanodes && !safe {
                return;
            }
            assert!(Instant::now() < deadline, "cluster not ready: {} live, safe mode {safe}", live.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn client(&self) -> DfsClient {
        DfsClient::connect(self.config()).await.expect("connect the client")
    }

    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(&self.addr);
        config.block_size = Some(self.block_size);
        config
    }

    /// Stops datanode `index` (its data stays).
    pub async fn stop_datanode(&mut self, index: usize) {
        if let Some(datanode) = self.datanodes[index].take() {
            datanode.stop().await;
        }
    }

    /// The finalized replica files (`blk_<id>`) of datanode `index`.
    pub fn replica_files(&self, index: usize) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![self.data_dirs[index].clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    stack.push(path);
                } else if name.starts_with("blk_")
                    && !name.ends_with(".meta")
                    && path.to_string_lossy().contains("finalized")
                {
                    found.push(path);
                }
            }
        }
        found
    }

    pub async fn stop(mut self) {
        for index in 0..self.datanodes.len() {
            self.stop_datanode(index).await;
        }
        if let Some(namenode) = self.namenode.take() {
            let _ = namenode.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Deterministic bytes that differ at every offset of interest.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
