//! The datanode in a real cluster (`ringfs namenode` + `ringfs datanode` processes),
//! driven by hdfs-native: every file shape at replication 1 and 3 with every byte
//! checked, HDFS's on-disk layout, a corrupt replica detected by the reader, and a
//! datanode killed mid-write. Runs on every data-port engine this build has.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdfs_native::{Client, ClientBuilder, WriteOptions};
use ringfs_common::checksum::DataChecksum;
use ringfs_common::ipc::protocol;
use ringfs_common::proto::hdfs::{
    ExtendedBlockProto, GetReplicaVisibleLengthRequestProto, GetReplicaVisibleLengthResponseProto,
};
use support::{pattern_bytes, Cluster, ClusterOptions};

const BLOCK: usize = 1 << 20;

fn engines() -> Vec<&'static str> {
    let mut engines = vec!["threads"];
    if ringfs_datanode::engine::uring_unavailable().is_none() {
        engines.push("uring");
    }
    engines
}

fn cluster(engine: &str, datanodes: usize, replication: u32) -> Cluster {
    Cluster::start(ClusterOptions {
        datanodes,
        replication,
        block_size: BLOCK as u64,
        engine: Some(engine.to_string()),
        ..ClusterOptions::default()
    })
}

fn native(cluster: &Cluster) -> Client {
    ClientBuilder::new().with_url(cluster.uri()).build().expect("hdfs-native client")
}

async fn put(client: &Client, path: &str, data: &[u8], replication: u32) {
    let options = WriteOptions::default().block_size(BLOCK as u64).replication(replication);
    let mut writer = client.create(path, options).await.expect("create");
    // Uneven writes, so packets do not line up with anything.
    for piece in data.chunks(100_003) {
        writer.write_bytes(bytes::Bytes::copy_from_slice(piece)).await.expect("write");
    }
    writer.close().await.expect("close");
}

async fn get(client: &Client, path: &str) -> Vec<u8> {
    let mut reader = client.read(path).await.expect("open for read");
    let length = reader.file_length();
    reader.read_bytes(length).await.expect("read").to_vec()
}

/// A finalized replica found on disk.
#[derive(Debug)]
struct DiskReplica {
    data: Vec<u8>,
    meta: Vec<u8>,
    dir: PathBuf,
}

/// The block pool directory of a datanode's data dir.
fn pool_dir(cluster: &Cluster, datanode: usize) -> PathBuf {
    let current = cluster.base_dir().join("data").join(format!("dn{datanode}")).join("current");
    let pool = std::fs::read_dir(&current)
        .expect("volume current/")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("BP-"))
        .expect("a block pool directory");
    pool.path()
}

/// Replicas under `dir` (finalized/ or rbw/), by block id, with their meta files.
fn replicas_in(dir: &Path) -> BTreeMap<u64, DiskReplica> {
    let mut files = Vec::new();
    support::walk_files(dir, &mut files);
    let mut replicas = BTreeMap::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(id) = name.strip_prefix("blk_").filter(|n| !n.contains('_') && !n.contains('.')) else {
            continue;
        };
        let id: u64 = id.parse().expect("numeric block id");
        let meta = files
            .iter()
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with(&format!("blk_{id}_")) && n.ends_with(".meta") && p.parent() == path.parent()
            })
            .unwrap_or_else(|| panic!("no meta file next to {}", path.display()));
        replicas.insert(
            id,
            DiskReplica {
                data: std::fs::read(path).unwrap(),
                meta: std::fs::read(meta).unwrap(),
                dir: path.parent().unwrap().to_path_buf(),
            },
        );
    }
    replicas
}

/// Checks HDFS's layout of every finalized replica of a datanode and returns the
/// concatenation of its blocks in block-id order (= allocation order).
fn check_layout(cluster: &Cluster, datanode: usize) -> Vec<u8> {
    let finalized = pool_dir(cluster, datanode).join("current").join("finalized");
    let mut all = Vec::new();
    for (id, replica) in replicas_in(&finalized) {
        let expected_dir = finalized
            .join(format!("subdir{}", (id >> 16) & 0x1F))
            .join(format!("subdir{}", (id >> 8) & 0x1F));
        assert_eq!(replica.dir, expected_dir, "blk_{id} sits in HDFS's 32x32 subdir");
        assert_eq!(&replica.meta[..7], &[0, 1, 2, 0, 0, 2, 0], "meta header: version 1, CRC32C, 512");
        assert_eq!(
            replica.meta[7..],
            DataChecksum::CRC32C_512.compute_vec(&replica.data)[..],
            "blk_{id} CRCs"
        );
        assert!(replica.data.len() <= BLOCK);
        all.extend_from_slice(&replica.data);
    }
    all
}

/// Files of 0 B, 1 B, exactly one block, several blocks plus a partial one.
fn shapes() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("/shapes/empty", Vec::new()),
        ("/shapes/one-byte", pattern_bytes(1, 1)),
        ("/shapes/one-block", pattern_bytes(BLOCK, 2)),
        ("/shapes/blocks-and-a-bit", pattern_bytes(3 * BLOCK + 12_345, 3)),
    ]
}

fn write_read_check(cluster: &Cluster, replication: u32) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = native(cluster);
    let shapes = shapes();
    runtime.block_on(async {
        for (path, data) in &shapes {
            put(&client, path, data, replication).await;
        }
        for (path, data) in &shapes {
            assert_eq!(get(&client, path).await, *data, "{path} read back");
            let reader = client.read(path).await.unwrap();
            for (offset, len) in [(1, 1), (511, 2), (513, 70_000), (BLOCK - 7, 14), (BLOCK + 1, 2 * BLOCK)] {
                if offset + len <= data.len() {
                    let read = reader.read_range(offset, len).await.expect("read_range");
                    assert_eq!(&read[..], &data[offset..offset + len], "{path} at {offset}+{len}");
                }
            }
        }
    });
    let expected: Vec<u8> = shapes.iter().flat_map(|(_, d)| d.clone()).collect();
    for datanode in 0..cluster.datanode_count() {
        let on_disk = check_layout(cluster, datanode);
        if replication as usize == cluster.datanode_count() {
            assert_eq!(on_disk.len(), expected.len(), "datanode {datanode} holds every block");
            assert!(on_disk == expected, "datanode {datanode}: block files hold the files' bytes in order");
        }
    }
}

#[test]
fn every_file_shape_at_replication_1_and_3() {
    for engine in engines() {
        write_read_check(&cluster(engine, 1, 1), 1);
        write_read_check(&cluster(engine, 3, 3), 3);
    }
}

#[test]
fn a_corrupt_replica_is_detected_and_another_one_is_read() {
    for engine in engines() {
        let cluster = cluster(engine, 3, 3);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let client = native(&cluster);
        let data = pattern_bytes(BLOCK + 5000, 9);
        runtime.block_on(put(&client, "/corrupt/file", &data, 3));
        // Flip one byte of the first block on two of the three datanodes: whichever
        // replica a reader tries first, most likely a bad one, it must end with the
        // good one.
        for datanode in [0, 1] {
            let finalized = pool_dir(&cluster, datanode).join("current").join("finalized");
            let mut files = Vec::new();
            support::walk_files(&finalized, &mut files);
            let first = files
                .iter()
                .filter(|p| !p.to_string_lossy().ends_with(".meta"))
                .min_by_key(|p| p.file_name().unwrap().to_string_lossy().to_string())
                .expect("a block file");
            let mut bytes = std::fs::read(first).unwrap();
            bytes[777] ^= 0x5a;
            std::fs::write(first, bytes).unwrap();
        }
        for attempt in 0..6 {
            let fresh = native(&cluster);
            let read = runtime.block_on(get(&fresh, "/corrupt/file"));
            assert!(read == data, "{engine}: read {attempt} returned the good replica's bytes");
        }
    }
}

#[test]
fn a_datanode_killed_mid_write_leaves_an_rbw_replica_reported_after_restart() {
    for engine in engines() {
        let mut cluster = cluster(engine, 1, 1);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let client = native(&cluster);
        let data = pattern_bytes(BLOCK + 300_000, 11);
        let writer = runtime.block_on(async {
            let options = WriteOptions::default().block_size(BLOCK as u64).replication(1);
            let mut writer = client.create("/crash/open", options).await.expect("create");
            writer.write_bytes(bytes::Bytes::copy_from_slice(&data)).await.expect("write");
            // Everything written so far is acknowledged and on disk.
            writer.hsync().await.expect("hsync");
            writer
        });
        cluster.kill_datanode(0);
        // The open writer is abandoned (its pipeline is gone).
        std::mem::forget(writer);
        let rbw = pool_dir(&cluster, 0).join("current").join("rbw");
        let before = replicas_in(&rbw);
        assert_eq!(before.len(), 1, "{engine}: the open block stays in rbw/ after the crash");
        let (&block_id, replica) = before.iter().next().unwrap();
        assert!(replica.data.len() >= 300_000, "hsynced bytes are on disk");
        assert_eq!(replica.data[..300_000], data[BLOCK..], "rbw data");

        cluster.restart_datanode(0);
        let after = replicas_in(&rbw);
        assert!(after.contains_key(&block_id), "{engine}: still RBW after restart, never finalized");
        let finalized = replicas_in(&pool_dir(&cluster, 0).join("current").join("finalized"));
        assert!(!finalized.contains_key(&block_id));
        // The restarted datanode serves the replica's checksummed length as its visible length.
        let pool = pool_dir(&cluster, 0).file_name().unwrap().to_string_lossy().to_string();
        let gen_stamp = std::fs::read_dir(&rbw)
            .unwrap()
            .flatten()
            .find_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_prefix(&format!("blk_{block_id}_"))?.strip_suffix(".meta")?.parse::<u64>().ok()
            })
            .expect("meta file");
        let ipc = cluster.datanode(0).ipc.clone();
        let length = runtime.block_on(async {
            let rpc =
                ringfs_rpc::RpcClient::connect(&ipc, "tester", protocol::CLIENT_DATANODE).await.unwrap();
            let request = GetReplicaVisibleLengthRequestProto {
                block: ExtendedBlockProto {
                    pool_id: pool,
                    block_id,
                    generation_stamp: gen_stamp,
                    num_bytes: None,
                },
            };
            let response: GetReplicaVisibleLengthResponseProto =
                rpc.call("getReplicaVisibleLength", &request).await.expect("getReplicaVisibleLength");
            response.length
        });
        assert_eq!(length, 300_000, "{engine}: visible length after restart = checksummed length");
    }
}

#[test]
fn lease_recovery_finalizes_the_replicas_of_an_abandoned_file() {
    for engine in engines() {
        let cluster = cluster(engine, 3, 3);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let writer_client = native(&cluster);
        let data = pattern_bytes(BLOCK + 300_000, 13);
        let writer = runtime.block_on(async {
            let options = WriteOptions::default().block_size(BLOCK as u64).replication(3);
            let mut writer = writer_client.create("/lease/abandoned", options).await.expect("create");
            writer.write_bytes(bytes::Bytes::copy_from_slice(&data)).await.expect("write");
            writer.hsync().await.expect("hsync");
            writer
        });
        // The writer never closes; another client takes the lease over.
        std::mem::forget(writer);
        let other = native(&cluster);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let recovered = runtime.block_on(other.recover_lease("/lease/abandoned")).expect("recoverLease");
            if recovered {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{engine}: lease recovery did not finish");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        assert!(
            runtime.block_on(get(&other, "/lease/abandoned")) == data,
            "{engine}: recovered file holds the hsynced bytes"
        );
        for datanode in 0..3 {
            let rbw = replicas_in(&pool_dir(&cluster, datanode).join("current").join("rbw"));
            assert!(rbw.is_empty(), "{engine}: datanode {datanode} finalized the recovered replica");
            assert_eq!(check_layout(&cluster, datanode), data, "{engine}: datanode {datanode} replicas");
        }
    }
}
