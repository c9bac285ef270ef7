use ringfs_common::checksum::{ChecksumKind, DataChecksum};
use ringfs_common::dtp::{ack_statuses, OpRequest, PacketHeader};
use ringfs_common::proto::hdfs::op_write_block_proto::BlockConstructionStage as Stage;
use ringfs_common::proto::hdfs::{
    BaseHeaderProto, ChecksumProto, ClientOperationHeaderProto, DatanodeIdProto, DatanodeInfoProto,
    ExtendedBlockProto, OpBlockChecksumProto, OpReadBlockProto, OpWriteBlockProto, Status,
};

use super::read::ReadPlan;
use super::write::{compose_ack, open_replica, Downstream, ReceiveState, WriteRequest, WriteTarget};
use super::*;
use crate::events::{EventSink, ReplicaEventKind};
use crate::store::{BlockStore, NamespaceIdentity, ReplicaState};

pub(crate) const POOL: &str = "BP-1-127.0.0.1-1";

pub(crate) fn test_store() -> (tempfile::TempDir, BlockStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(&[dir.path().to_path_buf()], false).unwrap();
    let ns = NamespaceIdentity {
        block_pool_id: POOL.into(),
        cluster_id: "CID-1".into(),
        namespace_id: 1,
        ctime: 0,
    };
    store.attach_block_pool(&ns).unwrap();
    (dir, store)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn header(offset: i64, seqno: i64, data_len: usize) -> PacketHeader {
    PacketHeader {
        offset_in_block: offset,
        seqno,
        last_packet_in_block: false,
        data_len: data_len as i32,
        sync_block: false,
    }
}

fn receive_state(store: &BlockStore, block_id: u64) -> ReceiveState {
    let writer = store.create(block_id, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
    ReceiveState::new(writer, DataChecksum::CRC32C_512)
}

/// Writes `data` at `offset` as one packet with its own CRCs.
fn write_packet(state: &ReceiveState, offset: u64, seqno: i64, data: &[u8]) {
    let checksums = DataChecksum::CRC32C_512.compute_vec(data);
    let plan = state.plan(header(offset as i64, seqno, data.len())).unwrap();
    state.verify(&plan, &checksums, data).unwrap();
    state.write(&plan, &checksums, data).unwrap();
    state.commit(&plan);
}

/// Every stored CRC must match the data on disk.
fn assert_consistent(store: &BlockStore, block_id: u64, expected: &[u8]) {
    let reader = store.open_for_read(block_id, 0).unwrap();
    let mut data = vec![0u8; expected.len()];
    reader.read_data(0, &mut data).unwrap();
    assert_eq!(data, expected);
    let chunks = expected.len().div_ceil(512);
    let mut crcs = vec![0u8; chunks * 4];
    reader.read_checksums(0, &mut crcs).unwrap();
    assert_eq!(crcs, DataChecksum::CRC32C_512.compute_vec(expected));
}

#[test]
fn aligned_packets_append_data_and_their_own_checksums() {
    let (_dir, store) = test_store();
    let state = receive_state(&store, 1);
    let data = pattern(3000, 1);
    let plan = state.plan(header(0, 0, 2048)).unwrap();
    assert_eq!((plan.data_skip, plan.chunk_skip, plan.first_disk_chunk, plan.chunks_written), (0, 0, 0, 4));
    assert_eq!(plan.partial_prefix, None);
    write_packet(&state, 0, 0, &data[..2048]);
    write_packet(&state, 2048, 1, &data[2048..]);
    assert_eq!(state.writer().bytes_on_disk(), 3000);
    assert_consistent(&store, 1, &data);
}

#[test]
fn a_packet_starting_mid_chunk_gets_the_whole_chunks_crc() {
    // hdfs-native after hsync, and both clients' first packet of an append.
    let (_dir, store) = test_store();
    let state = receive_state(&store, 2);
    let data = pattern(1536 + 700, 2);
    write_packet(&state, 0, 0, &data[..1100]);
    let plan = state.plan(header(1100, 1, 436)).unwrap();
    assert_eq!(plan.partial_prefix, Some((1024, 76)));
    assert_eq!((plan.first_disk_chunk, plan.chunks_written), (2, 1));
    write_packet(&state, 1100, 1, &data[1100..1536]);
    write_packet(&state, 1536, 2, &data[1536..]);
    assert_consistent(&store, 2, &data);
    // A packet crossing the chunk end from mid-chunk is malformed.
    let state = receive_state(&store, 3);
    write_packet(&state, 0, 0, &data[..100]);
    assert!(matches!(state.plan(header(100, 1, 500)), Err(OpError::Invalid { .. })));
}

#[test]
fn retransmissions_after_recovery_skip_what_is_on_disk() {
    let (_dir, store) = test_store();
    let state = receive_state(&store, 4);
    let data = pattern(5120, 4);
    write_packet(&state, 0, 0, &data[..3000]);
    // Java resends from the last acked chunk boundary.
    let plan = state.plan(header(1024, 1, 4096)).unwrap();
    assert_eq!(
        (plan.data_skip, plan.chunk_skip, plan.first_disk_chunk, plan.chunks_written),
        (1976, 3, 5, 5)
    );
    assert_eq!(plan.data_file_offset, 3000);
    write_packet(&state, 1024, 1, &data[1024..]);
    assert_consistent(&store, 4, &data);
    // A packet wholly on disk writes nothing; one past the end leaves a gap and is refused.
    let plan = state.plan(header(0, 2, 512)).unwrap();
    assert_eq!(plan.write_len(), 0);
    assert!(matches!(state.plan(header(6000, 3, 512)), Err(OpError::Invalid { .. })));
}

#[test]
fn java_resends_a_partial_chunk_after_hflush() {
    let (_dir, store) = test_store();
    let state = receive_state(&store, 5);
    let data = pattern(2024, 5);
    write_packet(&state, 0, 0, &data[..1100]);
    // The next packet starts at the chunk boundary and repeats bytes 1024..1100.
    let plan = state.plan(header(1024, 1, 1000)).unwrap();
    assert_eq!(
        (plan.data_skip, plan.chunk_skip, plan.first_disk_chunk, plan.partial_prefix),
        (76, 0, 2, None)
    );
    write_packet(&state, 1024, 1, &data[1024..]);
    assert_consistent(&store, 5, &data);
}

#[test]
fn checksums_are_translated_when_the_client_uses_another_algorithm() {
    let (_dir, store) = test_store();
    let writer = store.create(6, 1001, DataChecksum::CRC32C_512, ReplicaState::Rbw, 0).unwrap();
    let client = DataChecksum::new(ChecksumKind::Crc32, 512).unwrap();
    let state = ReceiveState::new(writer, client);
    assert!(state.translates());
    let data = pattern(1500, 6);
    let sums = client.compute_vec(&data);
    let plan = state.plan(header(0, 0, data.len())).unwrap();
    state.verify(&plan, &sums, &data).unwrap();
    state.write(&plan, &sums, &data).unwrap();
    state.commit(&plan);
    assert_consistent(&store, 6, &data);
}

#[test]
fn corrupt_packets_fail_verification() {
    let (_dir, store) = test_store();
    let state = receive_state(&store, 7);
    let data = pattern(1024, 7);
    let mut sums = DataChecksum::CRC32C_512.compute_vec(&data);
    sums[5] ^= 1;
    let plan = state.plan(header(0, 0, data.len())).unwrap();
    let error = state.verify(&plan, &sums, &data).unwrap_err();
    assert_eq!(error.status(), Status::ErrorChecksum);
}

#[test]
fn heartbeats_write_nothing() {
    let (_dir, store) = test_store();
    let state = receive_state(&store, 8);
    let plan = state.plan(header(0, -1, 0)).unwrap();
    assert!(plan.heartbeat);
    state.commit(&plan);
    assert_eq!(state.writer().bytes_on_disk(), 0);
}

fn finalized(store: &BlockStore, block_id: u64, data: &[u8]) {
    let state = receive_state(store, block_id);
    write_packet(&state, 0, 0, data);
    store.finalize(state.into_writer()).unwrap();
}

fn read_request(block_id: u64, gen_stamp: u64, offset: u64, len: u64) -> OpReadBlockProto {
    OpReadBlockProto {
        header: ClientOperationHeaderProto {
            base_header: BaseHeaderProto {
                block: ExtendedBlockProto {
                    pool_id: POOL.into(),
                    block_id,
                    generation_stamp: gen_stamp,
                    num_bytes: None,
                },
                token: None,
                trace_info: None,
            },
            client_name: "test".into(),
        },
        offset,
        len,
        send_checksums: Some(true),
        caching_strategy: None,
    }
}

#[test]
fn read_plans_start_on_a_chunk_and_end_with_an_empty_packet() {
    let (_dir, store) = test_store();
    let data = pattern(200_000, 9);
    finalized(&store, 10, &data);
    let plan = ReadPlan::prepare(&store, &read_request(10, 1001, 1000, 70_000)).unwrap();
    assert_eq!((plan.chunk_offset, plan.end_offset), (512, 71_168));
    let info = plan.response().read_op_checksum_info.unwrap();
    assert_eq!((info.chunk_offset, info.checksum.bytes_per_checksum), (512, 512));
    let packets: Vec<_> = plan.packets().collect();
    assert_eq!(packets.len(), 3);
    assert_eq!((packets[0].seqno, packets[0].offset_in_block, packets[0].data_len), (0, 512, 65_536));
    assert_eq!(
        (packets[1].offset_in_block, packets[1].data_len, packets[1].checksum_len),
        (66_048, 5_120, 40)
    );
    assert!(packets[2].last && packets[2].data_len == 0 && packets[2].offset_in_block == 71_168);
    assert_eq!(packets[2].seqno, 2);
    let mut sums = vec![0u8; packets[1].checksum_len];
    plan.fill_checksums(&packets[1], &mut sums).unwrap();
    assert_eq!(sums, DataChecksum::CRC32C_512.compute_vec(&data[66_048..71_168]));
    // The read may end mid-chunk at the end of the replica.
    let tail = ReadPlan::prepare(&store, &read_request(10, 1001, 199_999, 1)).unwrap();
    assert_eq!((tail.chunk_offset, tail.end_offset), (199_680, 200_000));
}

#[test]
fn reads_are_validated() {
    let (_dir, store) = test_store();
    finalized(&store, 11, &pattern(1000, 11));
    let past_end = ReadPlan::prepare(&store, &read_request(11, 1001, 900, 101)).unwrap_err();
    assert_eq!(past_end.status(), Status::ErrorInvalid);
    let missing = ReadPlan::prepare(&store, &read_request(12, 1001, 0, 1)).unwrap_err();
    assert!(missing.to_string().contains("not found"), "{missing}");
    let newer = ReadPlan::prepare(&store, &read_request(11, 1002, 0, 1)).unwrap_err();
    assert_eq!(newer.status(), Status::Error);
    let mut other_pool = read_request(11, 1001, 0, 1);
    other_pool.header.base_header.block.pool_id = "BP-other".into();
    assert!(ReadPlan::prepare(&store, &other_pool).is_err());
    // An older genstamp reads the newer replica (the client's cached locations).
    assert!(ReadPlan::prepare(&store, &read_request(11, 1000, 0, 1000)).is_ok());
    // No checksums asked: NULL, no checksum bytes.
    let mut no_sums = read_request(11, 1001, 0, 1000);
    no_sums.send_checksums = Some(false);
    let plan = ReadPlan::prepare(&store, &no_sums).unwrap();
    assert_eq!(plan.response().read_op_checksum_info.unwrap().checksum.r#type, 0);
    assert!(plan.packets().all(|p| p.checksum_len == 0));
}

#[test]
fn long_reads_advise_the_window_ahead_and_short_reads_nothing() {
    const MIB: u64 = 1 << 20;
    let (_dir, store) = test_store();
    let data = pattern(10 * MIB as usize, 21);
    finalized(&store, 21, &data);
    let plan =
        ReadPlan::prepare(&store, &read_request(21, 1001, 0, 10 * MIB)).unwrap().with_readahead(4 * MIB);
    let mut readahead = plan.readahead();
    let mut advised = Vec::new();
    for packet in plan.packets() {
        if let Some(range) = readahead.next(packet.offset_in_block) {
            advised.push(range);
        }
    }
    // The first window, then a refill each time half of it is consumed, up to the end.
    assert_eq!(advised[0], (0, 4 * MIB));
    assert!(advised.windows(2).all(|pair| pair[0].0 + pair[0].1 == pair[1].0), "{advised:?}");
    let last = advised.last().unwrap();
    assert_eq!(last.0 + last.1, 10 * MIB);
    assert!(advised.len() <= 10 * MIB as usize / (2 * MIB as usize) + 1, "{advised:?}");
    // A 64 KiB positional read, or readahead off: nothing.
    let short =
        ReadPlan::prepare(&store, &read_request(21, 1001, MIB, 65_536)).unwrap().with_readahead(4 * MIB);
    assert_eq!(short.readahead().next(MIB), None);
    let off = ReadPlan::prepare(&store, &read_request(21, 1001, 0, 10 * MIB)).unwrap();
    assert_eq!(off.readahead().next(0), None);
}

#[test]
fn rbw_reads_stop_at_the_acked_length_with_a_fresh_last_crc() {
    let (_dir, store) = test_store();
    let state = receive_state(&store, 13);
    let data = pattern(1400, 13);
    write_packet(&state, 0, 0, &data[..1100]);
    state.acknowledge(1100);
    // More data arrives (not yet acked): the stored CRC of chunk 2 now covers 1400 bytes.
    write_packet(&state, 1100, 1, &data[1100..1400]);
    assert!(ReadPlan::prepare(&store, &read_request(13, 1001, 0, 1101)).is_err());
    let plan = ReadPlan::prepare(&store, &read_request(13, 1001, 0, 1100)).unwrap();
    assert_eq!(plan.end_offset, 1100);
    let packet = plan.packets().next().unwrap();
    let mut sums = vec![0u8; packet.checksum_len];
    plan.fill_checksums(&packet, &mut sums).unwrap();
    assert_eq!(sums, DataChecksum::CRC32C_512.compute_vec(&data[..1100]));
}

fn checksum_request(block_id: u64, len: u64) -> OpBlockChecksumProto {
    OpBlockChecksumProto {
        header: BaseHeaderProto {
            block: ExtendedBlockProto {
                pool_id: POOL.into(),
                block_id,
                generation_stamp: 1001,
                num_bytes: Some(len),
            },
            token: None,
            trace_info: None,
        },
        block_checksum_options: None,
    }
}

#[test]
fn block_checksum_is_the_md5_of_the_stored_crcs() {
    use md5::{Digest, Md5};
    let (_dir, store) = test_store();
    let data = pattern(1300, 14);
    finalized(&store, 14, &data);
    let whole = checksum::block_checksum(&store, &checksum_request(14, 1300)).unwrap();
    let crcs = DataChecksum::CRC32C_512.compute_vec(&data);
    assert_eq!(whole.block_checksum.as_ref(), Md5::digest(&crcs).as_slice());
    assert_eq!((whole.bytes_per_crc, whole.crc_per_block), (512, 3));
    // A shorter request: one stored CRC plus a fresh CRC of bytes 512..700.
    let partial = checksum::block_checksum(&store, &checksum_request(14, 700)).unwrap();
    let crcs = DataChecksum::CRC32C_512.compute_vec(&data[..700]);
    assert_eq!(partial.block_checksum.as_ref(), Md5::digest(&crcs).as_slice());
    assert!(checksum::block_checksum(&store, &checksum_request(14, 1301)).is_err());
}

fn write_request(stage: Stage, targets: usize, client: &str) -> WriteRequest {
    let node = |i: u32| DatanodeInfoProto {
        id: DatanodeIdProto {
            ip_addr: "127.0.0.1".into(),
            host_name: "localhost".into(),
            datanode_uuid: format!("dn{i}"),
            xfer_port: 9000 + i,
            info_port: 0,
            ipc_port: 0,
            info_secure_port: None,
        },
        ..Default::default()
    };
    WriteRequest::parse(OpWriteBlockProto {
        header: ClientOperationHeaderProto {
            base_header: BaseHeaderProto {
                block: ExtendedBlockProto {
                    pool_id: POOL.into(),
                    block_id: 20,
                    generation_stamp: 1001,
                    num_bytes: Some(0),
                },
                token: None,
                trace_info: None,
            },
            client_name: client.into(),
        },
        targets: (1..=targets as u32).map(node).collect(),
        stage: stage as i32,
        pipeline_size: targets as u32 + 1,
        requested_checksum: ChecksumProto { r#type: 2, bytes_per_checksum: 512 },
        target_storage_ids: (1..=targets).map(|i| format!("DS-{i}")).collect(),
        storage_id: Some("DS-0".into()),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn the_mirror_gets_the_request_with_targets_shifted() {
    let request = write_request(Stage::PipelineSetupCreate, 2, "client-1");
    let mirror = request.mirror().unwrap();
    assert_eq!(mirror.addr, "127.0.0.1:9001");
    let OpRequest::WriteBlock(forwarded) = mirror.request else { panic!("a WRITE_BLOCK") };
    assert_eq!(forwarded.targets.len(), 1);
    assert_eq!(forwarded.targets[0].id.xfer_port, 9002);
    assert_eq!(forwarded.storage_id.as_deref(), Some("DS-1"));
    assert_eq!(forwarded.target_storage_ids, vec!["DS-2".to_string()]);
    assert_eq!(forwarded.pipeline_size, 3);
    assert!(write_request(Stage::PipelineSetupCreate, 0, "c").mirror().is_none());
    // Roles decide acks and verification.
    assert!(request.sends_acks() && !request.verifies(true, DataChecksum::CRC32C_512));
    assert!(request.verifies(false, DataChecksum::CRC32C_512));
    let copy = write_request(Stage::PipelineSetupCreate, 1, "");
    assert!(!copy.sends_acks() && copy.verifies(true, DataChecksum::CRC32C_512));
    let transfer = write_request(Stage::TransferRbw, 0, "client-1");
    assert!(!transfer.sends_acks() && transfer.sends_close_ack());
}

#[test]
fn acks_list_this_node_then_every_downstream_node() {
    let downstream = compose_ack(4, Status::Success, Downstream::None);
    let ack = compose_ack(
        4,
        Status::Success,
        Downstream::Ack(&compose_ack(4, Status::Success, Downstream::Ack(&downstream))),
    );
    assert_eq!(ack_statuses(&ack), vec![Status::Success; 3]);
    assert_eq!(ack.reply.len(), ack.flag.len());
    let failed = compose_ack(5, Status::Success, Downstream::Failed);
    assert_eq!(ack_statuses(&failed), vec![Status::Success, Status::Error]);
    assert_eq!(failed.seqno, 5);
}

#[test]
fn setup_reports_receiving_and_completion_reports_received() {
    let (_dir, store) = test_store();
    let (events, mut rx) = EventSink::channel();
    let request = write_request(Stage::PipelineSetupCreate, 0, "client");
    let WriteTarget::Receive(state) = open_replica(&store, &events, &request).unwrap() else {
        panic!("receive")
    };
    assert_eq!(rx.try_recv().unwrap().kind, ReplicaEventKind::Receiving);
    write_packet(&state, 0, 0, &pattern(10, 1));
    let replica = write::complete(&store, &events, &request, state).unwrap();
    assert_eq!(replica.state, ReplicaState::Finalized);
    let received = rx.try_recv().unwrap();
    assert_eq!((received.kind, received.length), (ReplicaEventKind::Received, 10));
    // A second create of the same block is refused with ERROR_EXISTS.
    let again = open_replica(&store, &events, &request).unwrap_err();
    assert_eq!(again.status(), Status::ErrorExists);
    // A DN-to-DN copy is a temporary replica: no RECEIVING.
    let mut copy = write_request(Stage::PipelineSetupCreate, 0, "");
    copy.proto.header.base_header.block.block_id = 21;
    let WriteTarget::Receive(state) = open_replica(&store, &events, &copy).unwrap() else {
        panic!("receive")
    };
    assert_eq!(state.writer().state(), ReplicaState::Temporary);
    assert!(rx.try_recv().is_err());
}
