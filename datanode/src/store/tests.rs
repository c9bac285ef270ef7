use super::*;
use ringfs_common::checksum::ChecksumKind;

const POOL: &str = "BP-7-127.0.0.1-1700000000000";

fn ns() -> NamespaceIdentity {
    NamespaceIdentity { block_pool_id: POOL.into(), cluster_id: "CID-test".into(), namespace_id: 7, ctime: 0 }
}

fn open(dirs: &[PathBuf]) -> BlockStore {
    let store = BlockStore::open(dirs, false).unwrap();
    store.attach_block_pool(&ns()).unwrap();
    store
}

/// Writes `data` into a new replica the way a receiver does: data, then one CRC per chunk.
fn write_all(writer: &RbwWriter, data: &[u8]) {
    let checksum = writer.checksum();
    writer.write_data_at(0, data).unwrap();
    writer.write_checksums_at(0, &checksum.compute_vec(data)).unwrap();
    writer.progress().set_bytes_on_disk(data.len() as u64);
    writer.progress().advance_bytes_acked(data.len() as u64);
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn finalized_replica_lands_in_the_hdfs_layout_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = vec![dir.path().to_path_buf()];
    let block_id = 0x4025_0301;
    let data = pattern(1300);
    let uuid = {
        let store = open(&dirs);
        let writer = store.create(block_id, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
        let rbw = dir.path().join(format!("current/{POOL}/current/rbw"));
        assert!(rbw.join(format!("blk_{block_id}")).is_file());
        write_all(&writer, &data);
        let replica = store.finalize(writer).unwrap();
        assert_eq!(
            (replica.state, replica.visible_len(), replica.gen_stamp),
            (ReplicaState::Finalized, 1300, 1001)
        );
        let finalized = dir.path().join(format!("current/{POOL}/current/finalized/subdir5/subdir3"));
        assert_eq!(std::fs::read(finalized.join(format!("blk_{block_id}"))).unwrap(), data);
        let meta = std::fs::read(finalized.join(format!("blk_{block_id}_1001.meta"))).unwrap();
        // 7-byte header (version 1, CRC32C, 512) and 3 CRCs, the last over 276 bytes.
        assert_eq!(&meta[..7], &[0, 1, 2, 0, 0, 2, 0]);
        assert_eq!(meta.len(), 7 + 3 * 4);
        assert_eq!(&meta[7 + 8..], &ChecksumKind::Crc32c.crc(&data[1024..]).to_be_bytes());
        assert!(!rbw.join(format!("blk_{block_id}")).exists());
        store.datanode_uuid().to_string()
    };
    let store = open(&dirs);
    assert_eq!(store.datanode_uuid(), uuid);
    let replica = store.get(block_id).unwrap();
    assert_eq!(
        (replica.state, replica.visible_len(), replica.gen_stamp),
        (ReplicaState::Finalized, 1300, 1001)
    );
    let reader = store.open_for_read(block_id, 1001).unwrap();
    let mut read = vec![0; 1300];
    reader.read_data(0, &mut read).unwrap();
    assert_eq!(read, data);
    assert_eq!(reader.checksum, DataChecksum::CRC32C_512);
    assert_eq!(
        store.block_report()[0],
        vec![ReportedReplica { block_id, gen_stamp: 1001, length: 1300, state: ReplicaState::Finalized }]
    );
}

#[test]
fn rbw_left_by_a_crash_is_reported_rbw_with_its_checksummed_length() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = vec![dir.path().to_path_buf()];
    {
        let store = open(&dirs);
        let writer = store.create(10, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
        let data = pattern(2000);
        write_all(&writer, &data);
        // A crash mid-packet: 700 more data bytes reached the block file, their CRCs did not.
        writer.write_data_at(2000, &pattern(700)).unwrap();
        // And a second replica whose last CRC is garbage (torn write).
        let torn = store.create(11, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
        write_all(&torn, &pattern(1024 + 100));
        torn.write_checksums_at(2, &[0xde, 0xad, 0xbe, 0xef]).unwrap();
        // Temporaries do not survive a restart.
        store.create(12, 1001, DataChecksum::CRC32C_512, ReplicaState::Temporary, 0).unwrap();
        std::mem::forget(writer);
        std::mem::forget(torn);
    }
    let store = open(&dirs);
    let replica = store.get(10).unwrap();
    assert_eq!(
        (replica.state, replica.visible_len(), replica.bytes_on_disk()),
        (ReplicaState::Rbw, 2000, 2000)
    );
    let rbw = dir.path().join(format!("current/{POOL}/current/rbw"));
    assert_eq!(std::fs::metadata(rbw.join("blk_10")).unwrap().len(), 2000, "unchecksummed tail truncated");
    let torn = store.get(11).unwrap();
    assert_eq!((torn.state, torn.visible_len()), (ReplicaState::Rbw, 1024), "bad last chunk dropped");
    assert!(store.get(12).is_none());
    let report = store.block_report();
    let mut states: Vec<_> = report[0].iter().map(|r| (r.block_id, r.state, r.length)).collect();
    states.sort_by_key(|s| s.0);
    assert_eq!(states, vec![(10, ReplicaState::Rbw, 2000), (11, ReplicaState::Rbw, 1024)]);
}

#[test]
fn append_reopens_into_rbw_and_renames_the_meta_to_the_new_genstamp() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&[dir.path().to_path_buf()]);
    let writer = store.create(20, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
    write_all(&writer, &pattern(600));
    store.finalize(writer).unwrap();
    assert!(matches!(store.append(20, 1000, 600, 1002), Err(StoreError::GenStampMismatch { .. })));
    assert!(matches!(store.append(20, 1001, 599, 1002), Err(StoreError::LengthMismatch { .. })));
    let writer = store.append(20, 1001, 600, 1002).unwrap();
    assert_eq!((writer.gen_stamp(), writer.bytes_on_disk()), (1002, 600));
    let rbw = dir.path().join(format!("current/{POOL}/current/rbw"));
    assert!(rbw.join("blk_20_1002.meta").is_file() && rbw.join("blk_20").is_file());
    let replica = store.get(20).unwrap();
    assert_eq!((replica.state, replica.gen_stamp, replica.visible_len()), (ReplicaState::Rbw, 1002, 600));
    let finalized = store.finalize(writer).unwrap();
    assert_eq!(finalized.gen_stamp, 1002);
    // hdfs-native appends without a new genstamp.
    let same = store.append(20, 1002, 600, 1002).unwrap();
    assert_eq!(same.gen_stamp(), 1002);
}

#[test]
fn recovery_takes_over_from_a_stopped_writer_and_bumps_the_genstamp() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&[dir.path().to_path_buf()]));
    let writer = store.create(30, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
    write_all(&writer, &pattern(1024));
    // The old writer gives the replica up when told to stop (as a dropped connection does).
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    writer.set_stopper(Box::new(move || {
        let _ = stop_tx.send(());
    }));
    let old = std::thread::spawn(move || {
        stop_rx.recv().unwrap();
        drop(writer);
    });
    assert!(matches!(
        store.recover_rbw(30, 1001, 1005, 2048, 4096),
        Err(StoreError::RecoveryRangeMismatch { .. })
    ));
    old.join().unwrap();
    let recovered = store.recover_rbw(30, 1001, 1005, 512, 4096).unwrap();
    assert_eq!((recovered.gen_stamp(), recovered.bytes_on_disk()), (1005, 1024));
    assert!(dir.path().join(format!("current/{POOL}/current/rbw/blk_30_1005.meta")).is_file());
    // A reader holding the old genstamp still gets the (newer) replica; a newer one does not.
    assert!(store.open_for_read(30, 1001).is_ok());
    assert!(matches!(store.open_for_read(30, 1006), Err(StoreError::GenStampMismatch { .. })));
    drop(recovered);
    let closed = store.recover_close(30, 1005, 1006, 1024).unwrap();
    assert_eq!((closed.state, closed.gen_stamp, closed.visible_len()), (ReplicaState::Finalized, 1006, 1024));
}

#[test]
fn create_refuses_existing_replicas_except_stale_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&[dir.path().to_path_buf()]);
    let writer = store.create(40, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
    drop(writer);
    assert!(matches!(
        store.create(40, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0),
        Err(StoreError::ReplicaExists { .. })
    ));
    // Replication of a newer genstamp replaces an old unfinished copy.
    let temp = store.create(40, 1002, DataChecksum::CRC32C_512, ReplicaState::Temporary, 0).unwrap();
    assert_eq!(store.get(40).unwrap().state, ReplicaState::Temporary);
    store.abandon(temp);
    assert!(store.get(40).is_none());
    assert_eq!(std::fs::read_dir(dir.path().join(format!("current/{POOL}/tmp"))).unwrap().count(), 0);
}

#[test]
fn temporary_becomes_rbw_or_finalized() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&[dir.path().to_path_buf()]);
    let checksum = DataChecksum::new(ChecksumKind::Crc32, 1024).unwrap();
    let temp = store.create(50, 1001, checksum, ReplicaState::Temporary, 0).unwrap();
    write_all(&temp, &pattern(3000));
    assert!(store.block_report()[0].is_empty(), "temporaries are not reported");
    let rbw = store.convert_temporary_to_rbw(temp).unwrap();
    assert_eq!((rbw.state, rbw.visible_len()), (ReplicaState::Rbw, 3000));
    let reader = store.open_for_read(50, 1001).unwrap();
    assert_eq!(reader.checksum, checksum);
}

#[test]
fn invalidate_deletes_only_the_named_genstamp() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&[dir.path().to_path_buf()]);
    let writer = store.create(60, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
    write_all(&writer, &pattern(10));
    store.finalize(writer).unwrap();
    assert!(store.volumes()[0].dfs_used() > 0);
    assert!(matches!(store.invalidate(60, 1000), Err(StoreError::GenStampMismatch { .. })));
    let deleted = store.invalidate(60, 1001).unwrap();
    assert_eq!(deleted.block_id, 60);
    assert!(store.get(60).is_none());
    assert_eq!(store.volumes()[0].dfs_used(), 0);
    let finalized = dir.path().join(format!("current/{POOL}/current/finalized/subdir0/subdir0"));
    assert!(!finalized.join("blk_60").exists() && !finalized.join("blk_60_1001.meta").exists());
}

#[test]
fn requests_for_another_pool_or_before_attach_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(&[dir.path().to_path_buf()], false).unwrap();
    assert!(matches!(store.check_pool(POOL), Err(StoreError::NoBlockPool)));
    store.attach_block_pool(&ns()).unwrap();
    assert!(store.check_pool(POOL).is_ok());
    assert!(matches!(store.check_pool("BP-other"), Err(StoreError::WrongBlockPool { .. })));
}

#[test]
fn scan_finds_many_replicas_across_volumes() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<_> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
    let count = 2000u64;
    {
        let store = open(&paths);
        for i in 0..count {
            let block_id = 1_073_741_825 + i * 37;
            let writer =
                store.create(block_id, 1001 + i, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
            write_all(&writer, &pattern((i % 1500) as usize));
            store.finalize(writer).unwrap();
        }
        // A stray file the scan must ignore, and an orphan meta.
        let sub = paths[0].join(format!("current/{POOL}/current/finalized/subdir0/subdir0"));
        std::fs::write(sub.join("README"), b"x").unwrap();
        std::fs::write(sub.join("blk_5_1001.meta"), b"x").unwrap();
    }
    let store = BlockStore::open(&paths, false).unwrap();
    let report = store.attach_block_pool(&ns()).unwrap();
    assert_eq!(report.replicas.len() as u64, count);
    assert_eq!(report.orphans, 1);
    for i in 0..count {
        let replica = store.get(1_073_741_825 + i * 37).unwrap();
        assert_eq!((replica.gen_stamp, replica.visible_len()), (1001 + i, i % 1500));
    }
    let per_volume: Vec<_> = store.block_report().iter().map(Vec::len).collect();
    assert_eq!(per_volume.iter().sum::<usize>() as u64, count);
    assert!(per_volume.iter().all(|&n| n > 0), "round-robin uses both volumes: {per_volume:?}");
}

/// Startup scan of 100k replicas; run with `--ignored --nocapture` to see the time.
#[test]
#[ignore]
fn scan_100k_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let paths = vec![dir.path().to_path_buf()];
    {
        let store = open(&paths);
        for i in 0..100_000u64 {
            let block_id = 1_073_741_825 + i;
            let writer =
                store.create(block_id, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
            write_all(&writer, b"x");
            store.finalize(writer).unwrap();
        }
    }
    let store = BlockStore::open(&paths, false).unwrap();
    let started = std::time::Instant::now();
    let report = store.attach_block_pool(&ns()).unwrap();
    eprintln!("scanned {} replicas in {:?}", report.replicas.len(), started.elapsed());
    assert_eq!(report.replicas.len(), 100_000);
}

#[test]
fn streaming_recovery_drops_unacknowledged_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&[dir.path().to_path_buf()]);
    let writer = store.create(70, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
    let data = pattern(1500);
    write_all(&writer, &data);
    let progress = Arc::clone(writer.progress());
    drop(writer);
    // Only 700 bytes made it back to the client as acked.
    progress.reset(700);
    progress.set_bytes_on_disk(1500);
    let recovered = store.recover_rbw(70, 1001, 1002, 700, 1500).unwrap();
    assert_eq!(recovered.bytes_on_disk(), 700);
    let rbw = dir.path().join(format!("current/{POOL}/current/rbw"));
    assert_eq!(std::fs::read(rbw.join("blk_70")).unwrap(), &data[..700]);
    let meta = std::fs::read(rbw.join("blk_70_1002.meta")).unwrap();
    assert_eq!(&meta[7..], &DataChecksum::CRC32C_512.compute_vec(&data[..700])[..]);
}

#[test]
fn lease_recovery_cuts_finalizes_and_refuses_older_recovery_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&[dir.path().to_path_buf()]);
    let writer = store.create(80, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
    let data = pattern(1500);
    write_all(&writer, &data);
    drop(writer);
    assert!(store.init_replica_recovery(81, 1001, 1005).unwrap().is_none(), "no such replica");
    let info = store.init_replica_recovery(80, 1001, 1005).unwrap().unwrap();
    assert_eq!((info.state, info.length, info.gen_stamp), (ReplicaState::Rbw, 1500, 1001));
    assert!(matches!(
        store.init_replica_recovery(80, 1001, 1004),
        Err(StoreError::RecoveryInProgress { .. })
    ));
    assert!(matches!(store.update_replica_under_recovery(80, 1004, 700), Err(StoreError::NoRecovery { .. })));
    let replica = store.update_replica_under_recovery(80, 1005, 700).unwrap();
    assert_eq!(
        (replica.state, replica.gen_stamp, replica.visible_len()),
        (ReplicaState::Finalized, 1005, 700)
    );
    let reader = store.open_for_read(80, 1005).unwrap();
    let mut crcs = vec![0u8; 8];
    reader.read_checksums(0, &mut crcs).unwrap();
    assert_eq!(crcs, DataChecksum::CRC32C_512.compute_vec(&data[..700]));
    // A finalized replica keeps its length and takes the new genstamp.
    store.init_replica_recovery(80, 1005, 1006).unwrap().unwrap();
    assert_eq!(store.update_replica_under_recovery(80, 1006, 700).unwrap().gen_stamp, 1006);
}

#[test]
fn truncate_recovery_cuts_a_finalized_replica() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&[dir.path().to_path_buf()]);
    let writer = store.create(90, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
    let data = pattern(1500);
    write_all(&writer, &data);
    store.finalize(writer).unwrap();
    store.init_replica_recovery(90, 1001, 1002).unwrap().unwrap();
    assert!(matches!(
        store.update_replica_under_recovery(90, 1002, 1600),
        Err(StoreError::LengthMismatch { .. })
    ));
    let replica = store.update_replica_under_recovery(90, 1002, 600).unwrap();
    assert_eq!(
        (replica.state, replica.gen_stamp, replica.visible_len()),
        (ReplicaState::Finalized, 1002, 600)
    );
    let finalized = dir.path().join(format!("current/{POOL}/current/finalized/subdir0/subdir0"));
    assert_eq!(std::fs::read(finalized.join("blk_90")).unwrap(), &data[..600]);
    let meta = std::fs::read(finalized.join("blk_90_1002.meta")).unwrap();
    assert_eq!(&meta[7..], &DataChecksum::CRC32C_512.compute_vec(&data[..600])[..]);
}
