//! Shared helpers: an in-process namenode on a free loopback port over a temp directory.

#![allow(dead_code)]

use std::path::PathBuf;

use ringfs_common::conf::Configuration;
use ringfs_namenode::permission::process_user;
use ringfs_namenode::{NameNode, NameNodeConfig};

pub struct TestNameNode {
    pub namenode: NameNode,
    pub dir: tempfile::TempDir,
    pub name_dir: PathBuf,
}

impl TestNameNode {
    /// Formats a fresh name directory and starts a namenode on 127.0.0.1:0.
    pub async fn start(overrides: &[(&str, &str)]) -> TestNameNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let name_dir = dir.path().join("name");
        let config = config_for(&name_dir, overrides);
        ringfs_namenode::format(&config.name_dir, None, false, &process_user(), &config.supergroup)
            .expect("format");
        let namenode = NameNode::start(config).await.expect("start namenode");
        TestNameNode { namenode, dir, name_dir }
    }

    /// Starts another namenode on the same directory (after the previous one stopped).
    pub async fn restart_on(name_dir: &std::path::Path, overrides: &[(&str, &str)]) -> NameNode {
        NameNode::start(config_for(name_dir, overrides)).await.expect("restart namenode")
    }

    pub fn addr(&self) -> String {
        self.namenode.rpc_address().to_string()
    }

    pub fn url(&self) -> String {
        format!("hdfs://{}", self.namenode.rpc_address())
    }

    pub fn client(&self) -> hdfs_native::Client {
        hdfs_client(&self.url(), None)
    }

    pub fn client_as(&self, user: &str) -> hdfs_native::Client {
        hdfs_client(&self.url(), Some(user))
    }
}

pub fn hdfs_client(url: &str, user: Option<&str>) -> hdfs_native::Client {
    let mut builder = hdfs_native::ClientBuilder::new().with_url(url);
    if let Some(user) = user {
        builder = builder.with_user(user);
    }
    builder.build().expect("hdfs-native client")
}

pub fn config_for(name_dir: &std::path::Path, overrides: &[(&str, &str)]) -> NameNodeConfig {
    let mut conf = Configuration::new();
    conf.set("dfs.namenode.name.dir", name_dir.display().to_string());
    conf.set("dfs.namenode.rpc-address", "127.0.0.1:0");
    conf.set("dfs.namenode.safemode.extension", "0");
    for (key, value) in overrides {
        conf.set(key, *value);
    }
    NameNodeConfig::from_conf(&conf).expect("valid configuration")
}

/// A datanode that only speaks DatanodeProtocol: registers, heartbeats and reports the
/// replicas a test tells it about.
pub struct FakeDatanode {
    pub rpc: ringfs_rpc::RpcClient,
    pub registration: ringfs_common::proto::hdfs::datanode::DatanodeRegistrationProto,
    pub block_pool_id: String,
}

pub mod dn {
    pub use ringfs_common::proto::hdfs::datanode::*;
    pub use ringfs_common::proto::hdfs::*;
}

impl FakeDatanode {
    pub async fn register(addr: &str, uuid: &str, xfer_port: u32) -> FakeDatanode {
        use dn::*;
        let rpc = ringfs_rpc::RpcClient::connect(addr, "root", ringfs_common::ipc::protocol::DATANODE)
            .await
            .unwrap();
        let version: VersionResponseProto =
            rpc.call("versionRequest", &VersionRequestProto {}).await.unwrap();
        let registration = DatanodeRegistrationProto {
            datanode_id: DatanodeIdProto {
                ip_addr: "0.0.0.0".into(),
                host_name: "localhost".into(),
                datanode_uuid: uuid.into(),
                xfer_port,
                info_port: 0,
                ipc_port: 0,
                info_secure_port: None,
            },
            storage_info: version.info.storage_info.clone(),
            keys: ExportedBlockKeysProto {
                is_block_token_enabled: false,
                key_update_interval: 0,
                token_life_time: 0,
                current_key: BlockKeyProto::default(),
                all_keys: vec![],
            },
            software_version: "3.5.0".into(),
        };
        let registered: RegisterDatanodeResponseProto =
            rpc.call("registerDatanode", &RegisterDatanodeRequestProto { registration }).await.unwrap();
        assert_eq!(
            registered.registration.datanode_id.ip_addr, "127.0.0.1",
            "the namenode uses the peer address"
        );
        let node = FakeDatanode {
            rpc,
            registration: registered.registration,
            block_pool_id: version.info.block_pool_id,
        };
        node.heartbeat().await;
        node
    }

    pub fn storage_uuid(&self) -> String {
        format!("DS-{}", self.registration.datanode_id.datanode_uuid)
    }

    fn storage(&self) -> dn::DatanodeStorageProto {
        dn::DatanodeStorageProto { storage_uuid: self.storage_uuid(), state: Some(0), storage_type: Some(1) }
    }

    #[allow(deprecated)]
    pub async fn heartbeat(&self) -> dn::HeartbeatResponseProto {
        use dn::*;
        let report = StorageReportProto {
            storage_uuid: self.storage_uuid(),
            failed: Some(false),
            capacity: Some(1 << 40),
            dfs_used: Some(0),
            remaining: Some(1 << 40),
            block_pool_used: Some(0),
            storage: Some(self.storage()),
            non_dfs_used: Some(0),
            mount: None,
        };
        let request = HeartbeatRequestProto {
            registration: self.registration.clone(),
            reports: vec![report],
            ..Default::default()
        };
        self.rpc.call("sendHeartbeat", &request).await.unwrap()
    }

    pub async fn received(&self, block: &dn::ExtendedBlockProto, length: u64) {
        let status = dn::received_deleted_block_info_proto::BlockStatus::Received;
        self.incremental(block.block_id, block.generation_stamp, length, status).await;
    }

    pub async fn deleted(&self, block: &dn::ExtendedBlockProto) {
        let status = dn::received_deleted_block_info_proto::BlockStatus::Deleted;
        self.incremental(block.block_id, block.generation_stamp, 0, status).await;
    }

    /// An incremental block report of one replica.
    #[allow(deprecated)]
    pub async fn incremental(
        &self,
        block_id: u64,
        gen_stamp: u64,
        length: u64,
        status: dn::received_deleted_block_info_proto::BlockStatus,
    ) {
        use dn::*;
        let request = BlockReceivedAndDeletedRequestProto {
            registration: self.registration.clone(),
            block_pool_id: self.block_pool_id.clone(),
            blocks: vec![StorageReceivedDeletedBlocksProto {
                storage_uuid: self.storage_uuid(),
                blocks: vec![ReceivedDeletedBlockInfoProto {
                    block: BlockProto { block_id, gen_stamp, num_bytes: Some(length) },
                    delete_hint: None,
                    status: status as i32,
                }],
                storage: Some(self.storage()),
            }],
        };
        let _: BlockReceivedAndDeletedResponseProto =
            self.rpc.call("blockReceivedAndDeleted", &request).await.unwrap();
    }

    /// A full block report of finalized replicas (id, length, stamp).
    pub async fn block_report(&self, replicas: &[(u64, u64, u64)]) {
        use dn::*;
        let mut longs = vec![replicas.len() as u64, 0];
        for (id, length, gen_stamp) in replicas {
            longs.extend([*id, *length, *gen_stamp]);
        }
        longs.extend([u64::MAX; 3]);
        let request = BlockReportRequestProto {
            registration: self.registration.clone(),
            block_pool_id: self.block_pool_id.clone(),
            reports: vec![StorageBlockReportProto {
                storage: self.storage(),
                blocks: longs,
                number_of_blocks: Some(replicas.len() as u64),
                blocks_buffers: vec![],
            }],
            context: None,
        };
        let _: BlockReportResponseProto = self.rpc.call("blockReport", &request).await.unwrap();
    }
}

/// Copies a name directory as it is on disk right now (what a crash would leave).
pub fn snapshot_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to.join("current")).unwrap();
    for entry in std::fs::read_dir(from.join("current")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("current").join(entry.file_name())).unwrap();
    }
}
