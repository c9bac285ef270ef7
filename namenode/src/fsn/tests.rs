//! Namesystem behaviour without RPC: datanodes are driven through the same calls their
//! DatanodeProtocol RPCs make, and time is moved by passing later instants to `tick`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringfs_common::proto::hdfs::datanode::{
    block_command_proto::Action, datanode_command_proto::Type as CommandType,
    received_deleted_block_info_proto::BlockStatus, BlockReceivedAndDeletedRequestProto,
    BlockReportRequestProto, CommitBlockSynchronizationRequestProto, DatanodeRegistrationProto,
    HeartbeatRequestProto, HeartbeatResponseProto, ReceivedDeletedBlockInfoProto, StorageBlockReportProto,
    StorageReceivedDeletedBlocksProto,
};
use ringfs_common::proto::hdfs::{
    BlockKeyProto, BlockProto, DatanodeIdProto, DatanodeStorageProto, ExportedBlockKeysProto,
    ExtendedBlockProto, StorageInfoProto, StorageReportProto,
};

use super::*;
use crate::config::NameNodeConfig;
use crate::error::ErrorKind;
use crate::permission::Caller;

const MB: u64 = 1024 * 1024;

fn namesystem() -> Namesystem {
    let mut config = NameNodeConfig::for_tests("/nonexistent".into());
    config.safemode_extension = Duration::ZERO;
    let info = NamespaceInfo {
        cluster_id: "CID-test".into(),
        namespace_id: 7,
        block_pool_id: "BP-1-127.0.0.1-1".into(),
        c_time: 0,
        layout_version: -66,
    };
    let ns = Namespace::new("hdfs", "supergroup", 0o755, 0);
    let mut fs = Namesystem::new(Arc::new(config), info, ns, BlockMap::new(), 0, "hdfs".into());
    fs.update_safemode(Instant::now());
    assert!(!fs.in_safemode(), "an empty namespace leaves safe mode at once");
    fs
}

fn hdfs() -> Caller {
    Caller::superuser("hdfs")
}

fn client_on(ip: &str) -> Caller {
    Caller { machine: ip.parse().unwrap(), ..Caller::superuser("hdfs") }
}

fn registration(uuid: &str) -> DatanodeRegistrationProto {
    DatanodeRegistrationProto {
        datanode_id: DatanodeIdProto {
            ip_addr: "0.0.0.0".into(),
            host_name: format!("host-{uuid}"),
            datanode_uuid: uuid.into(),
            xfer_port: 9866,
            info_port: 9864,
            ipc_port: 9867,
            info_secure_port: None,
        },
        storage_info: StorageInfoProto {
            layout_version: 0,
            namespce_id: 7,
            cluster_id: "CID-test".into(),
            c_time: 0,
        },
        keys: ExportedBlockKeysProto {
            is_block_token_enabled: false,
            key_update_interval: 0,
            token_life_time: 0,
            current_key: BlockKeyProto::default(),
            all_keys: vec![],
        },
        software_version: "3.5.0".into(),
    }
}

fn storage(uuid: &str) -> String {
    format!("DS-{uuid}")
}

/// Registers datanode `uuid` from `ip` and sends a first heartbeat with one storage.
fn add_datanode(fs: &mut Namesystem, uuid: &str, ip: &str) -> DatanodeRegistrationProto {
    let registered = fs
        .register_datanode(registration(uuid), ip.parse::<IpAddr>().unwrap(), "/default-rack".into())
        .unwrap();
    assert_eq!(registered.datanode_id.ip_addr, ip, "the namenode records the address it saw");
    heartbeat(fs, &registered);
    registered
}

#[allow(deprecated)]
fn heartbeat(fs: &mut Namesystem, registration: &DatanodeRegistrationProto) -> HeartbeatResponseProto {
    let uuid = &registration.datanode_id.datanode_uuid;
    fs.heartbeat(&HeartbeatRequestProto {
        registration: registration.clone(),
        reports: vec![StorageReportProto {
            storage_uuid: storage(uuid),
            failed: Some(false),
            capacity: Some(100 * 1024 * MB),
            dfs_used: Some(0),
            remaining: Some(100 * 1024 * MB),
            block_pool_used: Some(0),
            storage: Some(DatanodeStorageProto {
                storage_uuid: storage(uuid),
                state: Some(0),
                storage_type: Some(1),
            }),
            non_dfs_used: Some(0),
            mount: None,
        }],
        ..Default::default()
    })
}

#[allow(deprecated)]
fn received(
    fs: &mut Namesystem,
    registration: &DatanodeRegistrationProto,
    block: &ExtendedBlockProto,
    length: u64,
) {
    let uuid = &registration.datanode_id.datanode_uuid;
    fs.block_received_and_deleted(&BlockReceivedAndDeletedRequestProto {
        registration: registration.clone(),
        block_pool_id: fs.info.block_pool_id.clone(),
        blocks: vec![StorageReceivedDeletedBlocksProto {
            storage_uuid: storage(uuid),
            blocks: vec![ReceivedDeletedBlockInfoProto {
                block: BlockProto {
                    block_id: block.block_id,
                    gen_stamp: block.generation_stamp,
                    num_bytes: Some(length),
                },
                delete_hint: None,
                status: BlockStatus::Received as i32,
            }],
            storage: Some(DatanodeStorageProto {
                storage_uuid: storage(uuid),
                state: Some(0),
                storage_type: Some(1),
            }),
        }],
    })
    .unwrap();
}

fn create(fs: &mut Namesystem, path: &str, client: &str, replication: u32) -> InodeId {
    let args = CreateArgs {
        src: path.into(),
        masked: 0o644,
        client_name: client.into(),
        flags: client::CREATE_FLAG_CREATE | client::CREATE_FLAG_OVERWRITE,
        create_parent: true,
        replication,
        block_size: 4 * MB,
    };
    InodeId(fs.create(&hdfs(), &args).unwrap().file_id.unwrap())
}

fn add_block(
    fs: &mut Namesystem,
    path: &str,
    client: &str,
    previous: Option<ExtendedBlockProto>,
) -> ringfs_common::proto::hdfs::LocatedBlockProto {
    let args = AddBlockArgs { src: path.into(), client_name: client.into(), previous, ..Default::default() };
    fs.add_block(&client_on("10.0.0.1"), &args).unwrap()
}

fn commands(response: &HeartbeatResponseProto, action: Action) -> Vec<BlockProto> {
    response
        .cmds
        .iter()
        .filter_map(|c| c.blk_cmd.as_ref())
        .filter(|c| c.action == action as i32)
        .flat_map(|c| c.blocks.clone())
        .collect()
}

#[test]
fn write_path_commits_when_replicas_arrive() {
    let mut fs = namesystem();
    let dns: Vec<_> =
        (1..=3).map(|i| add_datanode(&mut fs, &format!("dn{i}"), &format!("10.0.0.{i}"))).collect();
    create(&mut fs, "/f", "c1", 3);
    let located = add_block(&mut fs, "/f", "c1", None);
    assert_eq!(located.locs.len(), 3);
    assert_eq!(located.storage_i_ds.len(), 3, "one storage id per location");
    assert_eq!(located.storage_types.len(), 3);
    assert_eq!(located.locs[0].id.ip_addr, "10.0.0.1", "the writer's own datanode comes first");
    assert_eq!(located.b.generation_stamp, crate::ids::FIRST_GEN_STAMP);
    assert_eq!(located.b.block_id, crate::ids::FIRST_BLOCK_ID);

    // A lost addBlock reply is retried with the same previous block: same block back.
    let again = add_block(&mut fs, "/f", "c1", None);
    assert_eq!(again.b.block_id, located.b.block_id);

    let mut last = located.b.clone();
    last.num_bytes = Some(100);
    assert!(!fs.complete(&hdfs(), "/f", "c1", Some(&last), None).unwrap(), "no replica reported yet");
    received(&mut fs, &dns[0], &last, 100);
    assert!(fs.complete(&hdfs(), "/f", "c1", Some(&last), None).unwrap());
    // A retried complete of the closed file succeeds.
    assert!(fs.complete(&hdfs(), "/f", "c1", Some(&last), None).unwrap());
    received(&mut fs, &dns[1], &last, 100);
    received(&mut fs, &dns[2], &last, 100);

    let (located, _) = fs.get_block_locations(&client_on("10.0.0.2"), "/f", 0, u64::MAX >> 1).unwrap();
    assert_eq!(located.file_length, 100);
    assert!(located.is_last_block_complete);
    assert!(!located.under_construction);
    assert_eq!(located.blocks.len(), 1);
    assert_eq!(located.blocks[0].locs.len(), 3);
    assert_eq!(located.blocks[0].locs[0].id.ip_addr, "10.0.0.2", "the reader's own datanode first");
    let status = fs.get_file_info(&hdfs(), "/f").unwrap().unwrap();
    assert_eq!(status.length, 100);

    // The wrong client cannot add blocks; a closed file has no lease.
    let err = fs.add_block(
        &hdfs(),
        &AddBlockArgs { src: "/f".into(), client_name: "c1".into(), ..Default::default() },
    );
    assert_eq!(err.unwrap_err().kind, ErrorKind::LeaseExpired);
}

#[test]
fn add_block_without_datanodes_names_the_problem() {
    let mut fs = namesystem();
    create(&mut fs, "/f", "c1", 1);
    let err = fs
        .add_block(
            &hdfs(),
            &AddBlockArgs { src: "/f".into(), client_name: "c1".into(), ..Default::default() },
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Io);
    assert!(
        err.message.contains("could only be written to 0 of the 1 minReplication nodes"),
        "{}",
        err.message
    );
}

#[test]
fn append_returns_the_partial_last_block() {
    let mut fs = namesystem();
    let dn = add_datanode(&mut fs, "dn1", "10.0.0.1");
    create(&mut fs, "/f", "c1", 1);
    let mut block = add_block(&mut fs, "/f", "c1", None).b;
    block.num_bytes = Some(10);
    received(&mut fs, &dn, &block, 10);
    assert!(fs.complete(&hdfs(), "/f", "c1", Some(&block), None).unwrap());

    let (last, stat) = fs.append(&hdfs(), "/f", "c2", 0).unwrap();
    let last = last.expect("partial block returned");
    assert_eq!(last.b.num_bytes, Some(10));
    assert_eq!(last.locs.len(), 1);
    assert_eq!(stat.length, 10);
    assert!(stat.path.is_empty());
    // Another writer is refused while c2 holds the lease.
    let err = fs.append(&hdfs(), "/f", "c3", 0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::AlreadyBeingCreated);
    assert!(err.message.contains("currently owned by c2"), "{}", err.message);
    let err = fs.append(&hdfs(), "/f", "c2", 0).unwrap_err();
    assert!(err.message.contains("c2 is already the current lease holder"), "{}", err.message);

    // Java bumps the stamp, reopens the pipeline, then reports the new stamp.
    let bumped = fs.update_block_for_pipeline(&last.b, "c2").unwrap();
    assert!(bumped.b.generation_stamp > last.b.generation_stamp);
    assert!(bumped.storage_i_ds.is_empty() && bumped.locs.is_empty());
    let mut new_block = bumped.b.clone();
    new_block.num_bytes = Some(20);
    fs.update_pipeline("c2", &last.b, &new_block, std::slice::from_ref(&dn.datanode_id), &[storage("dn1")])
        .unwrap();
    received(&mut fs, &dn, &new_block, 20);
    assert!(fs.complete(&hdfs(), "/f", "c2", Some(&new_block), None).unwrap());
    assert_eq!(fs.get_file_info(&hdfs(), "/f").unwrap().unwrap().length, 20);
}

#[test]
fn dead_datanodes_trigger_re_replication_and_setrep_trims() {
    let mut fs = namesystem();
    let dns: Vec<_> =
        (1..=4).map(|i| add_datanode(&mut fs, &format!("dn{i}"), &format!("10.0.0.{i}"))).collect();
    create(&mut fs, "/f", "c1", 3);
    let mut block = add_block(&mut fs, "/f", "c1", None).b;
    block.num_bytes = Some(5);
    let holders: Vec<usize> = (0..4).filter(|i| add_block_holder(&fs, &block, &dns[*i])).collect();
    assert_eq!(holders.len(), 3);
    for i in &holders {
        received(&mut fs, &dns[*i], &block, 5);
    }
    assert!(fs.complete(&hdfs(), "/f", "c1", Some(&block), None).unwrap());
    let spare = (0..4).find(|i| !holders.contains(i)).unwrap();

    // Only the spare and one holder keep heartbeating; the other two die.
    let later = Instant::now() + fs.config.heartbeat_expiry() + Duration::from_secs(1);
    for i in [spare, holders[0]] {
        fs.datanodes.node_mut(i as u32).last_heartbeat = later;
    }
    fs.tick(later, true);
    assert_eq!(fs.datanodes.live_count(), 2);
    let response = heartbeat(&mut fs, &dns[holders[0]]);
    let transfers: Vec<_> = response
        .cmds
        .iter()
        .filter_map(|c| c.blk_cmd.as_ref())
        .filter(|c| c.action == Action::Transfer as i32)
        .collect();
    assert_eq!(transfers.len(), 1, "the surviving holder is told to copy the block");
    assert_eq!(transfers[0].blocks[0].block_id, block.block_id);
    assert_eq!(transfers[0].targets[0].datanodes[0].id.datanode_uuid, format!("dn{}", spare + 1));
    assert_eq!(transfers[0].target_storage_uuids[0].storage_uuids[0], storage(&format!("dn{}", spare + 1)));
    received(&mut fs, &dns[spare], &block, 5);
    assert!(fs.redundancy.pending.is_empty(), "the copy arrived");

    // A dead node heartbeating again is told to register.
    let response = heartbeat(&mut fs, &dns[holders[1]]);
    assert_eq!(response.cmds[0].cmd_type, CommandType::RegisterCommand as i32);

    // setrep 1: one of the two good replicas is deleted.
    assert!(fs.set_replication(&hdfs(), "/f", 1).unwrap());
    fs.tick(Instant::now(), true);
    let deletions: usize = [spare, holders[0]]
        .iter()
        .map(|i| commands(&heartbeat(&mut fs, &dns[*i]), Action::Invalidate).len())
        .sum();
    assert_eq!(deletions, 1);

    // Deleting the file invalidates the remaining replica.
    assert!(fs.delete(&hdfs(), "/f", false).unwrap());
    let deletions: usize = [spare, holders[0]]
        .iter()
        .map(|i| commands(&heartbeat(&mut fs, &dns[*i]), Action::Invalidate).len())
        .sum();
    assert_eq!(deletions, 1);
}

fn add_block_holder(fs: &Namesystem, block: &ExtendedBlockProto, dn: &DatanodeRegistrationProto) -> bool {
    let index = fs.datanodes.by_uuid(&dn.datanode_id.datanode_uuid).unwrap();
    fs.blocks.expected_locations(BlockId(block.block_id)).iter().any(|r| r.node == index)
}

#[test]
fn block_reports_reconcile_and_end_safe_mode() {
    let mut fs = namesystem();
    let dn = add_datanode(&mut fs, "dn1", "10.0.0.1");
    create(&mut fs, "/f", "c1", 1);
    let mut block = add_block(&mut fs, "/f", "c1", None).b;
    block.num_bytes = Some(7);
    received(&mut fs, &dn, &block, 7);
    assert!(fs.complete(&hdfs(), "/f", "c1", Some(&block), None).unwrap());

    // As after a restart: the block is known, its replica is not.
    fs.drop_replicas_of(0);
    fs.safemode.state = SafeModeState::Startup;
    fs.update_safemode(Instant::now());
    assert!(fs.in_safemode());
    let err = fs.mkdirs(&hdfs(), "/d", 0o755, true).unwrap_err();
    assert_eq!(err.kind, ErrorKind::SafeMode);
    assert!(err.message.contains("The reported blocks 0 needs additional 1 blocks"), "{}", err.message);

    let report = |blocks: Vec<u64>| BlockReportRequestProto {
        registration: dn.clone(),
        block_pool_id: "BP-1-127.0.0.1-1".into(),
        reports: vec![StorageBlockReportProto {
            storage: DatanodeStorageProto {
                storage_uuid: storage("dn1"),
                state: Some(0),
                storage_type: Some(1),
            },
            blocks,
            number_of_blocks: None,
            blocks_buffers: vec![],
        }],
        context: None,
    };
    // The known block, plus one the namenode never heard of.
    fs.block_report(&report(vec![
        2,
        0,
        block.block_id,
        7,
        block.generation_stamp,
        999,
        1,
        1001,
        u64::MAX,
        u64::MAX,
        u64::MAX,
    ]))
    .unwrap();
    assert!(!fs.in_safemode(), "threshold reached with no extension configured");
    let invalidated = commands(&heartbeat(&mut fs, &dn), Action::Invalidate);
    assert_eq!(invalidated.iter().map(|b| b.block_id).collect::<Vec<_>>(), vec![999]);

    // A later report without the block removes the replica.
    fs.block_report(&report(vec![0, 0, u64::MAX, u64::MAX, u64::MAX])).unwrap();
    assert!(fs.blocks.replicas(BlockId(block.block_id)).is_empty());
    assert_eq!(fs.block_health().missing, 1);
}

#[test]
fn recover_lease_runs_block_recovery() {
    let mut fs = namesystem();
    let dns: Vec<_> =
        (1..=2).map(|i| add_datanode(&mut fs, &format!("dn{i}"), &format!("10.0.0.{i}"))).collect();
    create(&mut fs, "/open", "writer", 2);
    let block = add_block(&mut fs, "/open", "writer", None).b;

    assert!(!fs.recover_lease(&hdfs(), "/open", "recoverer").unwrap(), "recovery needed");
    let uc = fs.ns.under_construction(InodeId(crate::ids::FIRST_INODE_ID)).unwrap();
    assert_eq!(uc.client_name, "recoverer");
    let recovery: Vec<_> = dns
        .iter()
        .flat_map(|dn| heartbeat(&mut fs, dn).cmds)
        .filter_map(|c| c.recovery_cmd)
        .flat_map(|c| c.blocks)
        .collect();
    assert_eq!(recovery.len(), 1, "one primary gets the recovery");
    let new_gen_stamp = recovery[0].new_gen_stamp;
    assert!(new_gen_stamp > block.generation_stamp);
    assert_eq!(recovery[0].block.locs.len(), 2);
    // The old writer is fenced.
    let mut last = block.clone();
    last.num_bytes = Some(1);
    assert!(fs.complete(&hdfs(), "/open", "writer", Some(&last), None).is_err());

    let commit = CommitBlockSynchronizationRequestProto {
        block: block.clone(),
        new_gen_stamp,
        new_length: 42,
        close_file: true,
        delete_block: false,
        new_taragets: dns.iter().map(|d| d.datanode_id.clone()).collect(),
        new_target_storages: vec![storage("dn1"), storage("dn2")],
    };
    let mut stale = commit.clone();
    stale.new_gen_stamp = new_gen_stamp - 1;
    assert!(fs.commit_block_synchronization(&stale).is_err(), "a stale recovery id is refused");
    fs.commit_block_synchronization(&commit).unwrap();
    assert!(fs.is_file_closed(&hdfs(), "/open").unwrap());
    assert_eq!(fs.get_file_info(&hdfs(), "/open").unwrap().unwrap().length, 42);
    assert!(fs.recover_lease(&hdfs(), "/open", "recoverer").unwrap());
}

#[test]
fn abandoned_empty_files_close_on_recovery() {
    let mut fs = namesystem();
    add_datanode(&mut fs, "dn1", "10.0.0.1");
    create(&mut fs, "/empty", "gone", 1);
    assert!(fs.recover_lease(&hdfs(), "/empty", "me").unwrap(), "no blocks: closed at once");
    create(&mut fs, "/one", "gone", 1);
    add_block(&mut fs, "/one", "gone", None);
    fs.blocks.set_expected_locations(BlockId(crate::ids::FIRST_BLOCK_ID), Vec::new());
    assert!(fs.recover_lease(&hdfs(), "/one", "me").unwrap(), "an empty last block nobody holds is dropped");
    assert_eq!(fs.ns.inode(InodeId(crate::ids::FIRST_INODE_ID + 1)).blocks().len(), 0);
}

#[test]
fn truncate_at_block_boundaries() {
    let mut fs = namesystem();
    let dn = add_datanode(&mut fs, "dn1", "10.0.0.1");
    create(&mut fs, "/t", "c", 1);
    let mut first = add_block(&mut fs, "/t", "c", None).b;
    first.num_bytes = Some(4 * MB);
    received(&mut fs, &dn, &first, 4 * MB);
    let mut second = add_block(&mut fs, "/t", "c", Some(first.clone())).b;
    second.num_bytes = Some(100);
    received(&mut fs, &dn, &second, 100);
    assert!(fs.complete(&hdfs(), "/t", "c", Some(&second), None).unwrap());
    assert_eq!(fs.file_length(InodeId(crate::ids::FIRST_INODE_ID)), 4 * MB + 100);

    let err = fs.truncate(&hdfs(), "/t", 5 * MB, "c").unwrap_err();
    assert_eq!(err.kind, ErrorKind::HadoopIllegalArgument);
    assert!(fs.truncate(&hdfs(), "/t", 4 * MB, "c").unwrap());
    assert_eq!(fs.get_file_info(&hdfs(), "/t").unwrap().unwrap().length, 4 * MB);
    assert_eq!(commands(&heartbeat(&mut fs, &dn), Action::Invalidate).len(), 1);

    // Inside a block: recovery with a truncate block, the file open until it commits.
    assert!(!fs.truncate(&hdfs(), "/t", 10, "truncator").unwrap());
    assert!(!fs.is_file_closed(&hdfs(), "/t").unwrap());
    assert_eq!(
        fs.get_file_info(&hdfs(), "/t").unwrap().unwrap().length,
        4 * MB,
        "old length until recovery ends"
    );
    let recovery: Vec<_> = heartbeat(&mut fs, &dn)
        .cmds
        .into_iter()
        .filter_map(|c| c.recovery_cmd)
        .flat_map(|c| c.blocks)
        .collect();
    assert_eq!(recovery.len(), 1);
    let truncate_block = recovery[0].truncate_block.expect("a truncate block");
    assert_eq!(truncate_block.block_id, first.block_id, "in place: the same block");
    assert_eq!(truncate_block.num_bytes, Some(10));
    assert_eq!(truncate_block.gen_stamp, recovery[0].new_gen_stamp);
    let commit = CommitBlockSynchronizationRequestProto {
        block: recovery[0].block.b.clone(),
        new_gen_stamp: recovery[0].new_gen_stamp,
        new_length: 10,
        close_file: true,
        delete_block: false,
        new_taragets: vec![dn.datanode_id.clone()],
        new_target_storages: vec![storage("dn1")],
    };
    fs.commit_block_synchronization(&commit).unwrap();
    assert!(fs.is_file_closed(&hdfs(), "/t").unwrap());
    assert_eq!(fs.get_file_info(&hdfs(), "/t").unwrap().unwrap().length, 10);
}
