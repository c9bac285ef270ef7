//! The client against the real ringfs namenode and datanodes (in-process, loopback):
//! files of many shapes written and read back byte for byte, positional reads, append,
//! hflush visibility, namespace operations, typed errors, the file checksum, and reads
//! that survive a corrupt replica and a stopped datanode.

mod support;

use ringfs_client::{BlockReader, DfsError, FileKind, ReadBlockRequest};
use ringfs_common::checksum::{block_checksum_md5, ChecksumKind, DataChecksum, FileChecksum};
use ringfs_common::ipc::exception;
use support::{pattern, MiniCluster};

/// Small blocks so that files span several of them.
const BLOCK_SIZE: u64 = 64 * 1024;

/// Sizes around every boundary the data path has: chunk (512), packet (64,512 data
/// bytes), block (64 KiB here), and several blocks.
const SIZES: &[usize] = &[
    0, 1, 511, 512, 513, 4096, 64_511, 64_512, 64_513, 65_535, 65_536, 65_537, 129_024, 200_000, 262_144,
    300_001,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_of_many_sizes_round_trip() {
    let cluster = MiniCluster::start(3, BLOCK_SIZE).await;
    let client = cluster.client().await;
    client.mkdirs("/sizes", None).await.unwrap();
    for (i, &size) in SIZES.iter().enumerate() {
        let data = pattern(size, i as u64);
        let path = format!("/sizes/f{size}");
        let mut writer = client.create(&path, false, None, None).await.unwrap();
        // Uneven write calls: the packetiser must not care.
        for piece in data.chunks(7919) {
            writer.write_all(piece).await.unwrap();
        }
        assert_eq!(writer.len(), size as u64);
        writer.close().await.unwrap();

        let status = client.status(&path).await.unwrap();
        assert_eq!(status.length, size as u64, "{path}");
        assert_eq!(status.kind, FileKind::File);
        assert_eq!(status.replication, 3);
        assert_eq!(status.block_size, BLOCK_SIZE);
        let read = client.read_file(&path).await.unwrap();
        assert!(read == data, "{path}: contents differ");

        let mut reader = client.open(&path).await.unwrap();
        assert_eq!(reader.blocks().len(), size.div_ceil(BLOCK_SIZE as usize));
        if size > 0 {
            for offset in [0, size / 3, size - 1, size.saturating_sub(700)] {
                let mut buffer = vec![0u8; 1500.min(size - offset)];
                reader.read_exact_at(offset as u64, &mut buffer).await.unwrap();
                assert_eq!(buffer, data[offset..offset + buffer.len()], "{path} at {offset}");
            }
            let mut past_end = [0u8; 8];
            assert_eq!(reader.read_at(size as u64, &mut past_end).await.unwrap(), 0);
            reader.seek(size as u64 / 2);
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, data[size / 2..], "{path} from the middle");
        }
    }
    let listing = client.list("/sizes").await.unwrap();
    assert_eq!(listing.len(), SIZES.len());
    let summary = client.content_summary("/sizes").await.unwrap();
    assert_eq!(summary.length, SIZES.iter().sum::<usize>() as u64);
    assert_eq!(summary.file_count, SIZES.len() as u64);
    assert_eq!(summary.space_consumed, 3 * summary.length);
    cluster.stop().await;
}

/// The checksum `hadoop fs -checksum` would print, computed from the bytes.
fn expected_checksum(data: &[u8], block_size: usize) -> FileChecksum {
    let crc = DataChecksum::new(ChecksumKind::Crc32c, 512).unwrap();
    let md5s: Vec<[u8; 16]> =
        data.chunks(block_size).map(|b| block_checksum_md5(&crc.compute_vec(b))).collect();
    let crc_per_block = if md5s.len() > 1 { (block_size / 512) as u64 } else { 0 };
    FileChecksum::combine(512, crc_per_block, ChecksumKind::Crc32c, &md5s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespace_operations_checksums_and_errors() {
    let cluster = MiniCluster::start(2, BLOCK_SIZE).await;
    let client = cluster.client().await;
    let data = pattern(3 * BLOCK_SIZE as usize + 1000, 7);
    client.write_file("/a/b/data", &data).await.unwrap();

    let checksum = client.file_checksum("/a/b/data").await.unwrap();
    assert_eq!(checksum, expected_checksum(&data, BLOCK_SIZE as usize));
    assert_eq!(checksum.algorithm_name(), "MD5-of-128MD5-of-512CRC32C");
    client.write_file("/a/empty", b"").await.unwrap();
    assert_eq!(client.file_checksum("/a/empty").await.unwrap().algorithm_name(), "MD5-of-0MD5-of-0CRC32");

    // Typed errors keep the namenode's exception class.
    let exists = client.create("/a/b/data", false, None, None).await.err().expect("create over a file");
    assert!(exists.is_already_exists(), "{exists:?}");
    let missing = client.open("/a/nope").await.err().expect("open a missing file");
    assert!(missing.is_not_found(), "{missing:?}");
    assert!(client.get_file_info("/a/nope").await.unwrap().is_none());
    assert!(matches!(client.list("/nope").await, Err(DfsError::NotFound { .. })));
    let not_empty = client.delete("/a", false).await.expect_err("delete a non-empty directory");
    assert!(not_empty.is_remote(exception::PATH_IS_NOT_EMPTY_DIRECTORY), "{not_empty:?}");

    // Renames, times, permissions, replication.
    assert!(client.rename("/a/b/data", "/a/moved").await.unwrap());
    assert!(!client.rename("/a/missing", "/a/x").await.unwrap());
    client.rename2("/a/empty", "/a/moved", true).await.unwrap();
    assert_eq!(client.status("/a/moved").await.unwrap().length, 0);
    client.write_file("/a/f", b"contents").await.unwrap();
    client.set_permission("/a/f", 0o600).await.unwrap();
    client.set_times("/a/f", Some(1_000_000), None).await.unwrap();
    assert!(client.set_replication("/a/f", 1).await.unwrap());
    let status = client.status("/a/f").await.unwrap();
    assert_eq!((status.permission, status.modification_time_ms, status.replication), (0o600, 1_000_000, 1));
    assert_eq!(status.name(), "f");

    // Relative paths resolve under /user/<user>.
    client.mkdirs("rel", None).await.unwrap();
    let home = format!("/user/{}", client.user());
    assert!(client.status(&format!("{home}/rel")).await.unwrap().is_dir());
    assert_eq!(client.resolve("rel/../x").unwrap(), format!("{home}/x"));

    assert!(client.delete("/a", true).await.unwrap());
    assert!(!client.exists("/a").await.unwrap());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn append_hflush_and_truncate() {
    let cluster = MiniCluster::start(3, BLOCK_SIZE).await;
    let client = cluster.client().await;
    let first = pattern(1000, 1);
    client.write_file("/log", &first).await.unwrap();

    // Append to the partial last block, across a block boundary and beyond.
    let second = pattern(2 * BLOCK_SIZE as usize, 2);
    let mut writer = client.append("/log").await.unwrap();
    writer.write_all(&second).await.unwrap();
    writer.close().await.unwrap();
    let mut expected = first.clone();
    expected.extend_from_slice(&second);
    assert_eq!(client.read_file("/log").await.unwrap(), expected);

    // Append after a full block starts a new one.
    client.write_file("/full", &pattern(BLOCK_SIZE as usize, 3)).await.unwrap();
    let mut writer = client.append("/full").await.unwrap();
    writer.write_all(b"tail").await.unwrap();
    writer.close().await.unwrap();
    assert_eq!(client.status("/full").await.unwrap().length, BLOCK_SIZE + 4);

    // hflush makes bytes visible to a second client while the writer stays open.
    let mut writer = client.create("/open", true, None, None).await.unwrap();
    let visible = pattern(5000, 4);
    writer.write_all(&visible).await.unwrap();
    writer.hflush().await.unwrap();
    let reader_client = cluster.client().await;
    let seen = reader_client.read_file("/open").await.unwrap();
    assert_eq!(seen, visible, "flushed bytes visible before close");
    writer.write_all(b"more").await.unwrap();
    writer.hsync().await.unwrap();
    writer.close().await.unwrap();
    assert_eq!(client.status("/open").await.unwrap().length, 5004);

    // Truncate at a block boundary finishes at once.
    assert!(client.truncate("/log", BLOCK_SIZE).await.unwrap());
    assert_eq!(client.read_file("/log").await.unwrap(), expected[..BLOCK_SIZE as usize]);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_survive_a_corrupt_replica_and_a_stopped_datanode() {
    let mut cluster = MiniCluster::start(3, BLOCK_SIZE).await;
    let client = cluster.client().await;
    let data = pattern(100_000, 9);
    client.write_file("/precious", &data).await.unwrap();

    // Flip a byte in every replica file of two datanodes: their CRCs no longer match.
    for node in [0, 1] {
        let replicas = cluster.replica_files(node);
        assert!(!replicas.is_empty(), "datanode {node} holds replicas");
        for replica in &replicas {
            let mut bytes = std::fs::read(replica).unwrap();
            bytes[10] ^= 0xff;
            std::fs::write(replica, bytes).unwrap();
        }
    }
    // A direct read of a corrupt replica fails with a checksum error naming the block.
    let located = client.namenode().get_block_locations("/precious", 0, 1 << 40).await.unwrap().unwrap();
    let block = &located.blocks[0];
    let mut corrupt_seen = 0;
    for node in &block.locs {
        let addr = ringfs_client::datanode::xfer_addr(node);
        let token = ringfs_client::datanode::token_or_empty(Some(&block.block_token));
        let request = ReadBlockRequest {
            addr: &addr,
            block: &block.b,
            token: &token,
            client_name: client.namenode().client_name(),
            offset: 0,
            len: block.b.num_bytes.unwrap(),
            verify_checksum: true,
            peer_cache: None,
        };
        let mut reader = BlockReader::open(request).await.unwrap();
        let mut buffer = vec![0u8; block.b.num_bytes.unwrap() as usize];
        match reader.read_exact(&mut buffer).await {
            Ok(()) => assert_eq!(buffer, data[..buffer.len()]),
            Err(DfsError::Checksum { block_id, .. }) => {
                assert_eq!(block_id, block.b.block_id);
                corrupt_seen += 1;
            }
            Err(other) => panic!("unexpected read error from {addr}: {other}"),
        }
    }
    assert_eq!(corrupt_seen, 2, "two of the three replicas are corrupt");
    for _ in 0..3 {
        // Whatever the replica order, the reader falls back to the good one.
        assert_eq!(client.read_file("/precious").await.unwrap(), data);
    }
    let mut reader = client.open("/precious").await.unwrap();
    let mut middle = vec![0u8; 30_000];
    reader.read_exact_at(60_000, &mut middle).await.unwrap();
    assert_eq!(middle, data[60_000..90_000]);

    // With a corrupt replica's node stopped, the remaining good one still serves.
    cluster.stop_datanode(1).await;
    assert_eq!(client.read_file("/precious").await.unwrap(), data, "read with one replica corrupt, one down");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lease_renewer_keeps_a_slow_writer_alive() {
    // The namenode recovers leases not renewed within a second.
    let cluster = MiniCluster::start_with(1, BLOCK_SIZE, &[("dfs.namenode.lease.hard-limit", "1")]).await;
    let mut config = cluster.config();
    config.lease_renew_interval = std::time::Duration::from_millis(200);
    let client = ringfs_client::DfsClient::connect(config).await.unwrap();
    let mut writer = client.create("/slow", true, None, None).await.unwrap();
    let first = pattern(BLOCK_SIZE as usize + 10, 5);
    writer.write_all(&first).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    writer.write_all(&first).await.unwrap();
    writer.close().await.unwrap();
    assert_eq!(client.status("/slow").await.unwrap().length, 2 * first.len() as u64);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_survive_a_datanode_dying_mid_block() {
    let victims: Vec<usize> = match std::env::var("RINGFS_TEST_VICTIM") {
        Ok(v) => vec![v.parse().unwrap()],
        Err(_) => vec![0, 1, 2],
    };
    for victim in victims {
        let mut cluster = MiniCluster::start(3, 4 * BLOCK_SIZE).await;
        let client = cluster.client().await;
        let data = pattern(6 * BLOCK_SIZE as usize + 777, victim as u64);
        let (before, after) = data.split_at(BLOCK_SIZE as usize + 5000);
        let mut writer = client.create("/survivor", true, None, None).await.unwrap();
        writer.write_all(before).await.unwrap();
        writer.hflush().await.unwrap();
        // Whichever position the stopped node has in the pipeline, the write goes on.
        cluster.stop_datanode(victim).await;
        writer.write_all(after).await.unwrap();
        writer.close().await.unwrap();
        let status = client.status("/survivor").await.unwrap();
        assert_eq!(status.length, data.len() as u64, "victim {victim}");
        assert!(client.read_file("/survivor").await.unwrap() == data, "victim {victim}: contents differ");
        cluster.stop().await;
    }
}
