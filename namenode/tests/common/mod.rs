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
