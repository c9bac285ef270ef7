//! Round-trip properties for every frame type: decode(encode(x)) == x, and decoders that
//! see a frame one byte at a time ask for more instead of failing.

use bytes::Bytes;
use proptest::prelude::*;
use ringfs_common::checksum::{ChecksumKind, DataChecksum, FileChecksum, MetaHeader};
use ringfs_common::dtp::{self, OpRequest, Packet, PacketHeader, PacketLayout};
use ringfs_common::ipc::{self, AuthProtocol, CallId, ClientFrame, Preamble, RemoteError, Response};
use ringfs_common::limits::RPC_FRAME_SIZE_MAX;
use ringfs_common::proto::hdfs::{
    op_write_block_proto::BlockConstructionStage, BaseHeaderProto, BlockOpResponseProto, ChecksumProto,
    ClientOperationHeaderProto, ClientReadStatusProto, ExtendedBlockProto, GetFileInfoRequestProto,
    OpBlockChecksumProto, OpReadBlockProto, OpTransferBlockProto, OpWriteBlockProto, PipelineAckProto,
    Status,
};

fn block(pool: String, id: u64, gs: u64, len: u64) -> ExtendedBlockProto {
    ExtendedBlockProto { pool_id: pool, block_id: id, generation_stamp: gs, num_bytes: Some(len) }
}

fn client_header(pool: String, id: u64, gs: u64, len: u64, client: String) -> ClientOperationHeaderProto {
    ClientOperationHeaderProto {
        base_header: BaseHeaderProto { block: block(pool, id, gs, len), token: None, trace_info: None },
        client_name: client,
    }
}

fn op_request() -> impl Strategy<Value = OpRequest> {
    let header = ("[A-Za-z0-9-]{0,40}", any::<u64>(), any::<u64>(), any::<u64>(), "[A-Za-z0-9_]{0,30}")
        .prop_map(|(p, i, g, l, c)| client_header(p, i, g, l, c));
    prop_oneof![
        (header.clone(), any::<u64>(), any::<u64>(), proptest::option::of(any::<bool>())).prop_map(
            |(header, offset, len, send_checksums)| {
                OpRequest::ReadBlock(OpReadBlockProto {
                    header,
                    offset,
                    len,
                    send_checksums,
                    caching_strategy: None,
                })
            }
        ),
        (header.clone(), 0i32..9, 1u32..4, any::<u64>(), any::<u64>()).prop_map(
            |(header, stage, pipeline_size, min, gs)| {
                OpRequest::WriteBlock(OpWriteBlockProto {
                    header,
                    stage,
                    pipeline_size,
                    min_bytes_rcvd: min,
                    max_bytes_rcvd: min,
                    latest_generation_stamp: gs,
                    requested_checksum: ChecksumProto { r#type: 2, bytes_per_checksum: 512 },
                    ..Default::default()
                })
            }
        ),
        header.clone().prop_map(|h| OpRequest::BlockChecksum(OpBlockChecksumProto {
            header: h.base_header,
            block_checksum_options: None
        })),
        header.prop_map(|header| OpRequest::TransferBlock(OpTransferBlockProto {
            header,
            ..Default::default()
        })),
    ]
}

proptest! {
    #[test]
    fn op_requests_round_trip(request in op_request()) {
        let mut bytes = Vec::new();
        request.encode(&mut bytes);
        let (decoded, consumed) = OpRequest::decode(&bytes).unwrap().unwrap();
        prop_assert_eq!(consumed, bytes.len());
        prop_assert_eq!(&decoded, &request);
        for cut in 0..bytes.len() {
            prop_assert!(OpRequest::decode(&bytes[..cut]).unwrap().is_none(), "prefix of {} bytes", cut);
        }
    }

    #[test]
    fn packets_round_trip(
        offset in 0i64..1 << 40,
        seqno in -1i64..1 << 40,
        last in any::<bool>(),
        sync in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 0..5000),
        crc32c in any::<bool>(),
    ) {
        let kind = if crc32c { ChecksumKind::Crc32c } else { ChecksumKind::Crc32 };
        let checksum = DataChecksum::new(kind, 512).unwrap();
        let sums = checksum.compute_vec(&data);
        let header = PacketHeader {
            offset_in_block: offset,
            seqno,
            last_packet_in_block: last,
            data_len: data.len() as i32,
            sync_block: sync,
        };
        let packet = Packet { header, checksums: &sums, data: &data };
        let mut bytes = Vec::new();
        packet.encode(&mut bytes);
        let (decoded, consumed) = Packet::decode(&bytes, Some(checksum)).unwrap().unwrap();
        prop_assert_eq!(consumed, bytes.len());
        prop_assert_eq!(decoded, packet);
        decoded.verify(checksum).unwrap();
        let layout = PacketLayout::decode(&bytes, None).unwrap().unwrap();
        prop_assert_eq!(layout.total_len(), bytes.len());
        for cut in [0, 3, 6, layout.prefix_len - 1, bytes.len() - 1] {
            prop_assert!(Packet::decode(&bytes[..cut], Some(checksum)).unwrap().is_none());
        }
    }

    #[test]
    fn acks_and_statuses_round_trip(seqno in -2i64..1 << 50, count in 1usize..6, bad in 0usize..6) {
        let statuses: Vec<Status> = (0..count).map(|i| if i == bad { Status::Error } else { Status::Success }).collect();
        let ack = dtp::pipeline_ack(seqno, &statuses);
        let mut bytes = Vec::new();
        dtp::encode_delimited(&ack, &mut bytes);
        let (decoded, consumed) = dtp::decode_delimited::<PipelineAckProto>(&bytes, "ack").unwrap().unwrap();
        prop_assert_eq!(consumed, bytes.len());
        prop_assert_eq!(dtp::ack_statuses(&decoded), statuses);
        let status = ClientReadStatusProto { status: Status::ChecksumOk as i32 };
        let mut bytes = Vec::new();
        dtp::encode_delimited(&status, &mut bytes);
        let (decoded, _) = dtp::decode_delimited::<ClientReadStatusProto>(&bytes, "status").unwrap().unwrap();
        prop_assert_eq!(decoded, status);
    }

    #[test]
    fn rpc_calls_round_trip(call_id in 0i32..i32::MAX, src in "/[a-z/]{0,64}", method in "[a-zA-Z]{1,30}") {
        let client_id = [7u8; 16];
        let request = GetFileInfoRequestProto { src: src.clone() };
        let mut frame = Vec::new();
        ipc::encode_call(call_id, &client_id, &method, ipc::protocol::CLIENT, &request, &mut frame);
        let (size, consumed) = ipc::split_frame(&frame, RPC_FRAME_SIZE_MAX).unwrap().unwrap();
        prop_assert_eq!(consumed, frame.len());
        prop_assert_eq!(size + 4, frame.len());
        match ClientFrame::decode(Bytes::copy_from_slice(&frame[4..]), RPC_FRAME_SIZE_MAX).unwrap() {
            ClientFrame::Call { header, request: rh, payload } => {
                prop_assert_eq!(header.call_id, call_id);
                prop_assert_eq!(&header.client_id[..], &client_id[..]);
                prop_assert_eq!(rh.method_name, method);
                prop_assert_eq!(rh.declaring_class_protocol_name, ipc::protocol::CLIENT);
                let decoded: GetFileInfoRequestProto = prost::Message::decode(payload).unwrap();
                prop_assert_eq!(decoded.src, src);
            }
            other => prop_assert!(false, "expected a call, got {:?}", other),
        }
        for cut in 0..frame.len() {
            prop_assert!(ipc::split_frame(&frame[..cut], RPC_FRAME_SIZE_MAX).unwrap().is_none());
        }
    }

    #[test]
    fn rpc_responses_round_trip(call_id in -40i32..i32::MAX, ok in any::<bool>(), msg in ".{0,80}") {
        let call = CallId { call_id, client_id: Bytes::from_static(&[1; 16]), retry_count: 0 };
        let mut frame = Vec::new();
        let expected = if ok {
            let response = BlockOpResponseProto { status: 0, message: Some(msg.clone()), ..Default::default() };
            ipc::encode_response(&call, &response, &mut frame);
            Ok(Bytes::from(prost::Message::encode_to_vec(&response)))
        } else {
            let error = RemoteError::new(ipc::exception::IO, msg.clone());
            ipc::encode_error(&call, &error, false, &mut frame);
            Err(error)
        };
        let response = Response::decode(Bytes::copy_from_slice(&frame[4..]), RPC_FRAME_SIZE_MAX).unwrap();
        prop_assert_eq!(response.call_id, call_id);
        prop_assert_eq!(response.outcome, expected);
    }

    #[test]
    fn meta_headers_round_trip(kind in 0u8..3, bpc in 1u32..1 << 20) {
        let checksum = DataChecksum::new(ChecksumKind::from_id(kind).unwrap(), bpc).unwrap();
        let header = MetaHeader { checksum };
        prop_assert_eq!(MetaHeader::decode(&header.encode()).unwrap(), header);
    }

    #[test]
    fn checksum_verify_detects_any_flipped_bit(data in proptest::collection::vec(any::<u8>(), 1..3000), bit in any::<usize>()) {
        let checksum = DataChecksum::CRC32C_512;
        let sums = checksum.compute_vec(&data);
        checksum.verify(&data, &sums, 0).unwrap();
        let mut corrupt = data.clone();
        let bit = bit % (corrupt.len() * 8);
        corrupt[bit / 8] ^= 1 << (bit % 8);
        let error = checksum.verify(&corrupt, &sums, 1024).unwrap_err();
        let chunk = bit / 8 / 512;
        let expected_offset = 1024 + (chunk as u64) * 512;
        let found = matches!(error, ringfs_common::checksum::ChecksumError::Mismatch { chunk: c, offset, .. } if c == chunk && offset == expected_offset);
        prop_assert!(found, "wrong mismatch report: {:?}", error);
    }
}

#[test]
fn preamble_round_trips_and_rejects() {
    for auth in [AuthProtocol::None, AuthProtocol::Sasl] {
        let preamble = Preamble { service_class: 0, auth };
        let bytes = preamble.encode();
        assert_eq!(Preamble::decode(&bytes).unwrap(), Some((preamble, 7)));
    }
    assert_eq!(Preamble::decode(b"hrpc").unwrap(), None);
    assert!(Preamble::decode(b"hrpc\x08\x00\x00").is_err(), "version 8");
    assert!(Preamble::decode(b"GET / H").is_err());
    assert!(Preamble::decode(b"hrpc\x09\x00\x01").is_err(), "unknown auth");
}

#[test]
fn write_stage_values_match_hadoop() {
    assert_eq!(BlockConstructionStage::PipelineSetupCreate as i32, 6);
    assert_eq!(BlockConstructionStage::PipelineSetupAppend as i32, 0);
    assert_eq!(BlockConstructionStage::TransferFinalized as i32, 8);
}

#[test]
fn file_checksum_matches_hadoop_layout() {
    // Known value: MD5 of MD5("") is the file checksum of one empty CRC list.
    let empty = ringfs_common::checksum::block_checksum_md5(&[]);
    assert_eq!(
        empty,
        [0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42, 0x7e]
    );
    let file = FileChecksum::combine(512, 0, ChecksumKind::Crc32c, &[empty]);
    assert_eq!(file.algorithm_name(), "MD5-of-0MD5-of-512CRC32C");
    let bytes = file.to_bytes();
    assert_eq!(&bytes[..4], &512u32.to_be_bytes());
    assert_eq!(&bytes[4..12], &0u64.to_be_bytes());
    assert_eq!(file.to_hex().len(), 56);
}
