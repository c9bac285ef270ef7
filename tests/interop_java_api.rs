//! The Java `DistributedFileSystem` API (Apache Hadoop 3.5) against a fresh ringfs cluster:
//! tests/interop/java/DfsApiTest.java, compiled with javac against the client jars at test
//! time, prints one PASS/FAIL line per check.

mod support;

use std::time::Duration;

use support::{run, Client, Cluster, ClusterOptions, RealClients};

const CHECKS: &[&str] = &[
    "filesystem_is_hdfs",
    "create_write_read_multiblock",
    "positional_read_across_blocks",
    "block_locations",
    "hflush_visible_to_second_client",
    "hsync",
    "append",
    "concat",
    "list_status_10000",
    "file_checksum_equal_for_equal_contents",
    "datanode_stats",
    "safe_mode_enter_leave",
    "permission_denied_for_other_user",
    "rename_delete_content_summary",
    "set_times_owner_permission",
];

#[test]
fn java_distributed_file_system_api() {
    let Some(clients) = RealClients::require(Client::JavaApi) else { return };
    let options = ClusterOptions::default();
    let cluster = Cluster::start(options.clone());
    let classes = clients.compile_java(&["DfsApiTest.java"]);
    let mut command = clients.command("hadoop");
    command
        .env("HADOOP_CLASSPATH", &classes)
        .env("HADOOP_OPTS", "-Duser.timezone=UTC")
        .arg("DfsApiTest")
        .arg(cluster.uri())
        .arg(options.block_size.to_string())
        .arg(options.datanodes.to_string());
    let output = run(&mut command, None, Duration::from_secs(900));
    let expected: Vec<String> = CHECKS.iter().map(|s| s.to_string()).collect();
    support::assert_all_pass("Java DistributedFileSystem API", &output, &expected, &cluster);
}
