//! DataTransferProtocol against the real data-port engines (every engine this host can
//! run), over loopback sockets, without a namenode.

mod support;

use std::io::Write;

use ringfs_common::checksum::DataChecksum;
use ringfs_common::dtp::{OpRequest, PacketHeader};
use ringfs_common::proto::hdfs::op_write_block_proto::BlockConstructionStage as Stage;
use ringfs_common::proto::hdfs::{OpBlockChecksumProto, OpTransferBlockProto, Status};
use ringfs_datanode::events::ReplicaEventKind;
use ringfs_datanode::ops::transfer::{plan_transfer, TransferKind};
use ringfs_datanode::store::ReplicaState;
use support::*;

const MIB: usize = 1 << 20;

#[test]
fn write_then_read_every_byte_at_many_offsets() {
    for kind in engines() {
        let mut node = TestNode::start(kind);
        for (block_id, len) in [(1u64, 0usize), (2, 1), (3, 512), (4, MIB), (5, 3 * 65_536 + 777)] {
            let data = pattern(len, block_id);
            write_block(&[node.addr], block_id, &data, 64_512);
            let replica = node.ctx.store.get(block_id).unwrap();
            assert_eq!((replica.state, replica.visible_len()), (ReplicaState::Finalized, len as u64));
            assert_eq!(
                read_block(node.addr, block_id, 0, len as u64).unwrap(),
                data,
                "{kind:?} block {block_id}"
            );
            for (offset, count) in [(1, 1), (511, 2), (513, 1000), (65_535, 70_000), (len / 2, len / 3)] {
                if offset + count <= len {
                    let read = read_block(node.addr, block_id, offset as u64, count as u64).unwrap();
                    assert_eq!(
                        read,
                        &data[offset..offset + count],
                        "{kind:?} block {block_id} at {offset}+{count}"
                    );
                }
            }
        }
        let kinds: Vec<_> = node.drain_events().into_iter().map(|e| (e.block_id, e.kind)).collect();
        assert!(
            kinds.contains(&(4, ReplicaEventKind::Receiving))
                && kinds.contains(&(4, ReplicaEventKind::Received))
        );
        // The bytes are in HDFS's layout.
        let finalized = node.dir.path().join(format!("current/{POOL}/current/finalized/subdir0/subdir0"));
        assert_eq!(std::fs::read(finalized.join("blk_5")).unwrap(), pattern(3 * 65_536 + 777, 5));
        assert!(finalized.join("blk_5_1001.meta").is_file());
    }
}

#[test]
fn a_three_node_pipeline_stores_three_replicas() {
    for kind in engines() {
        let nodes: Vec<_> = (0..3).map(|_| TestNode::start(kind)).collect();
        let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
        let data = pattern(2 * MIB + 12_345, 7);
        write_block(&addrs, 7, &data, 64_512);
        for node in &nodes {
            node.wait_for("the replica to be finalized", |s| {
                s.get(7).is_some_and(|r| r.state == ReplicaState::Finalized)
            });
            assert_eq!(
                read_block(node.addr, 7, 0, data.len() as u64).unwrap(),
                data,
                "{kind:?} at {}",
                node.addr
            );
        }
    }
}

/// Sends a good packet then one whose CRC is wrong, through `addrs`.
fn send_corrupt_packet(addrs: &[std::net::SocketAddr], block_id: u64) -> DtpClient {
    let mut client = DtpClient::connect(addrs[0]);
    let op = write_op(block(block_id, 1001, 0), Stage::PipelineSetupCreate, &addrs[1..], "c");
    client.send_op(OpRequest::WriteBlock(op));
    assert_eq!(client.response().status, Status::Success as i32);
    client.send_data(0, 0, &pattern(1024, 1));
    assert_eq!(client.ack().reply, vec![Status::Success as i32; addrs.len()]);
    let bad = pattern(1024, 2);
    let mut sums = DataChecksum::CRC32C_512.compute_vec(&bad);
    sums[0] ^= 0xff;
    let header = PacketHeader {
        offset_in_block: 1024,
        seqno: 1,
        last_packet_in_block: false,
        data_len: 1024,
        sync_block: false,
    };
    client.send_packet(header, &sums, &bad);
    client
}

#[test]
fn a_corrupt_packet_is_refused_and_never_finalized() {
    for kind in engines() {
        // Alone, the node verifies and answers ERROR_CHECKSUM.
        let single = TestNode::start(kind);
        let mut client = send_corrupt_packet(&[single.addr], 9);
        let ack = client.ack();
        assert_eq!((ack.seqno, ack.reply.clone()), (1, vec![Status::ErrorChecksum as i32]));
        assert!(client.is_closed());
        let replica = single.ctx.store.get(9).unwrap();
        assert_eq!((replica.state, replica.bytes_on_disk()), (ReplicaState::Rbw, 1024), "{kind:?}");

        // In a pipeline only the last node verifies; the node that forwarded corrupt data
        // is the suspect (Java: it stops without acking, so the client drops it).
        let nodes: Vec<_> = (0..2).map(|_| TestNode::start(kind)).collect();
        let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
        let mut client = send_corrupt_packet(&addrs, 9);
        assert!(client.is_closed(), "{kind:?}: no success ack for a corrupt packet");
        let last = nodes[1].ctx.store.get(9).unwrap();
        assert_eq!(
            (last.state, last.bytes_on_disk()),
            (ReplicaState::Rbw, 1024),
            "{kind:?}: nothing bad written"
        );
        let first = nodes[0].ctx.store.get(9).unwrap();
        assert_eq!((first.state, first.visible_len()), (ReplicaState::Rbw, 1024), "{kind:?}: never acked");
        // Every node keeps serving.
        for node in nodes.iter().chain([&single]) {
            write_block(&[node.addr], 10, &pattern(1024, 3), 512);
        }
    }
}

#[test]
fn bad_input_gets_an_error_and_closes_only_that_connection() {
    for kind in engines() {
        let node = TestNode::start(kind);
        write_block(&[node.addr], 11, &pattern(5000, 11), 4096);
        let mut idle = DtpClient::connect(node.addr);
        // Wrong version.
        let mut client = DtpClient::connect(node.addr);
        client.stream.write_all(&[0, 27, 81, 0]).unwrap();
        let response = client.response();
        assert_eq!(response.status, Status::ErrorInvalid as i32);
        assert!(response.message.unwrap().contains("version 27"));
        assert!(client.is_closed());
        // A garbage op body.
        let mut client = DtpClient::connect(node.addr);
        client.stream.write_all(&[0, 28, 81, 3, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(client.response().status, Status::ErrorInvalid as i32);
        assert!(client.is_closed());
        // An op body claiming 1 GiB is refused before anything is allocated.
        let mut client = DtpClient::connect(node.addr);
        client.stream.write_all(&[0, 28, 80, 0x80, 0x80, 0x80, 0x80, 0x04]).unwrap();
        assert_eq!(client.response().status, Status::ErrorInvalid as i32);
        // A block we do not have.
        let error = read_block(node.addr, 999, 0, 1).unwrap_err();
        assert_eq!(error.status, Status::Error as i32);
        assert!(error.message.unwrap().contains("999"));
        // A read past the end.
        let error = read_block(node.addr, 11, 4000, 1001).unwrap_err();
        assert_ne!(error.status, Status::Success as i32);
        // A malformed packet in a write: payload length smaller than itself.
        let mut client = DtpClient::connect(node.addr);
        client.send_op(OpRequest::WriteBlock(write_op(
            block(12, 1001, 0),
            Stage::PipelineSetupCreate,
            &[],
            "c",
        )));
        assert_eq!(client.response().status, Status::Success as i32);
        client.stream.write_all(&[0, 0, 0, 1, 0, 0]).unwrap();
        assert!(client.is_closed());
        assert_eq!(node.ctx.store.get(12).unwrap().state, ReplicaState::Rbw);
        // The idle connection and new ones still work.
        assert_eq!(read_on(&mut idle, 11, 0, 5000).unwrap(), pattern(5000, 11));
    }
}

#[test]
fn connections_are_reused_and_unsupported_ops_are_refused_politely() {
    for kind in engines() {
        let node = TestNode::start(kind);
        let data = pattern(100_000, 13);
        write_block(&[node.addr], 13, &data, 64_512);
        let mut client = DtpClient::connect(node.addr);
        assert_eq!(read_on(&mut client, 13, 0, 10).unwrap(), &data[..10]);
        // REQUEST_SHORT_CIRCUIT_FDS: ERROR_UNSUPPORTED, the connection stays usable.
        client.stream.write_all(&[0, 28, 87, 0]).unwrap();
        let response = client.response();
        assert_eq!(response.status, Status::ErrorUnsupported as i32);
        assert!(response.message.is_some());
        assert_eq!(read_on(&mut client, 13, 99_000, 1000).unwrap(), &data[99_000..]);
        // BLOCK_CHECKSUM on the same connection.
        client.send_op(OpRequest::BlockChecksum(OpBlockChecksumProto {
            header: header(block(13, 1001, 100_000), "").base_header,
            block_checksum_options: None,
        }));
        let response = client.response();
        let checksum = response.checksum_response.unwrap();
        let crcs = DataChecksum::CRC32C_512.compute_vec(&data);
        assert_eq!(checksum.block_checksum.as_ref(), ringfs_common::checksum::block_checksum_md5(&crcs));
        assert_eq!((checksum.bytes_per_crc, checksum.crc_per_block), (512, 196));
    }
}

#[test]
fn heartbeats_are_acked_and_hsync_flushes() {
    for kind in engines() {
        let nodes: Vec<_> = (0..2).map(|_| TestNode::start(kind)).collect();
        let mut client = DtpClient::connect(nodes[0].addr);
        client.send_op(OpRequest::WriteBlock(write_op(
            block(15, 1001, 0),
            Stage::PipelineSetupCreate,
            &[nodes[1].addr],
            "c",
        )));
        assert_eq!(client.response().status, Status::Success as i32);
        let heartbeat = PacketHeader {
            offset_in_block: 0,
            seqno: -1,
            last_packet_in_block: false,
            data_len: 0,
            sync_block: false,
        };
        client.send_packet(heartbeat, &[], &[]);
        let ack = client.ack();
        assert_eq!((ack.seqno, ack.reply.len()), (-1, 2));
        let data = pattern(700, 15);
        let sums = DataChecksum::CRC32C_512.compute_vec(&data);
        let sync = PacketHeader {
            offset_in_block: 0,
            seqno: 0,
            last_packet_in_block: false,
            data_len: 700,
            sync_block: true,
        };
        client.send_packet(sync, &sums, &data);
        assert_eq!(client.ack().seqno, 0);
        // hflush/hsync visibility: readers see the acked 700 bytes while the block is open.
        for node in &nodes {
            node.wait_for("the ack", |s| s.visible_length(15, 1001).unwrap_or(0) == 700);
            assert_eq!(read_block(node.addr, 15, 0, 700).unwrap(), data);
        }
        // hdfs-native continues mid-chunk after hsync: one partial chunk, then aligned.
        let more = pattern(2000, 16);
        client.send_data(700, 1, &more[..324]);
        client.send_data(1024, 2, &more[324..]);
        client.send_last(2700, 3);
        for seqno in 1..=3 {
            assert_eq!(client.ack().seqno, seqno);
        }
        let mut all = data.clone();
        all.extend_from_slice(&more);
        for node in &nodes {
            node.wait_for("finalize", |s| s.get(15).is_some_and(|r| r.state == ReplicaState::Finalized));
            assert_eq!(read_block(node.addr, 15, 0, 2700).unwrap(), all);
        }
    }
}

#[test]
fn append_rewrites_the_partial_last_chunk_checksum() {
    for kind in engines() {
        let node = TestNode::start(kind);
        let first = pattern(1000, 17);
        write_block(&[node.addr], 17, &first, 65_536);
        let mut client = DtpClient::connect(node.addr);
        let mut op = write_op(block(17, 1001, 1000), Stage::PipelineSetupAppend, &[], "c");
        op.latest_generation_stamp = 1002;
        client.send_op(OpRequest::WriteBlock(op));
        assert_eq!(client.response().status, Status::Success as i32);
        let more = pattern(3000, 18);
        // The first packet tops up the partial chunk: 24 bytes with a CRC of those bytes only.
        client.send_data(1000, 0, &more[..24]);
        client.send_data(1024, 1, &more[24..]);
        client.send_last(4000, 2);
        for seqno in 0..3 {
            assert_eq!(client.ack().seqno, seqno);
        }
        let replica = node.ctx.store.get(17).unwrap();
        assert_eq!(
            (replica.state, replica.gen_stamp, replica.visible_len()),
            (ReplicaState::Finalized, 1002, 4000)
        );
        let mut all = first.clone();
        all.extend_from_slice(&more);
        let mut reader = DtpClient::connect(node.addr);
        reader.send_op(OpRequest::ReadBlock(read_op(17, 1002, 0, 4000)));
        assert_eq!(reader.response().status, Status::Success as i32);
        drop(reader);
        assert_eq!(read_block(node.addr, 17, 0, 4000).unwrap(), all);
        let meta = node
            .dir
            .path()
            .join(format!("current/{POOL}/current/finalized/subdir0/subdir0/blk_17_1002.meta"));
        assert_eq!(std::fs::read(meta).unwrap()[7..], DataChecksum::CRC32C_512.compute_vec(&all)[..]);
    }
}

#[test]
fn an_unreachable_mirror_is_named_in_the_connect_ack() {
    for kind in engines() {
        let node = TestNode::start(kind);
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut client = DtpClient::connect(node.addr);
        client.send_op(OpRequest::WriteBlock(write_op(
            block(19, 1001, 0),
            Stage::PipelineSetupCreate,
            &[dead],
            "c",
        )));
        let response = client.response();
        assert_eq!(response.status, Status::Error as i32);
        assert_eq!(response.first_bad_link.as_deref(), Some(dead.to_string().as_str()));
    }
}

#[test]
fn replication_and_pipeline_transfers_copy_replicas_between_nodes() {
    for kind in engines() {
        let mut source = TestNode::start(kind);
        let mut target = TestNode::start(kind);
        let data = pattern(MIB + 100, 21);
        write_block(&[source.addr], 21, &data, 64_512);
        source.drain_events();
        // DNA_TRANSFER: a finalized copy, reported RECEIVED by the target.
        let plan = plan_transfer(
            &source.ctx.store,
            &block(21, 1001, data.len() as u64),
            &[datanode_info(target.addr)],
            &[],
            &[],
            TransferKind::Replication,
        )
        .unwrap();
        ringfs_datanode::transfer::run(&source.ctx, plan).unwrap();
        target.wait_for("the copy", |s| s.get(21).is_some_and(|r| r.state == ReplicaState::Finalized));
        assert_eq!(read_block(target.addr, 21, 0, data.len() as u64).unwrap(), data);
        assert!(target
            .drain_events()
            .iter()
            .any(|e| e.block_id == 21 && e.kind == ReplicaEventKind::Received));
        // TRANSFER_BLOCK of a replica being written: the target gets an RBW copy.
        let mut writer = DtpClient::connect(source.addr);
        writer.send_op(OpRequest::WriteBlock(write_op(
            block(22, 1001, 0),
            Stage::PipelineSetupCreate,
            &[],
            "c",
        )));
        assert_eq!(writer.response().status, Status::Success as i32);
        let partial = pattern(3000, 22);
        writer.send_data(0, 0, &partial);
        assert_eq!(writer.ack().seqno, 0);
        let third = TestNode::start(kind);
        let mut client = DtpClient::connect(source.addr);
        client.send_op(OpRequest::TransferBlock(OpTransferBlockProto {
            header: header(block(22, 1001, 3000), "c"),
            targets: vec![datanode_info(third.addr)],
            target_storage_types: vec![],
            target_storage_ids: vec![],
        }));
        assert_eq!(client.response().status, Status::Success as i32);
        let copy = third.ctx.store.get(22).unwrap();
        assert_eq!((copy.state, copy.visible_len()), (ReplicaState::Rbw, 3000));
        assert_eq!(read_block(third.addr, 22, 0, 3000).unwrap(), partial);
    }
}
