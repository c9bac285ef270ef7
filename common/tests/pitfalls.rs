//! One test per documented interoperability pitfall (hdfs-wire-protocol.md §6), pinned at
//! the byte level so a regression shows up here before a real client trips on it.

use bytes::Bytes;
use prost::Message;
use ringfs_common::dtp::{ack_status, ack_statuses, pipeline_ack, PacketHeader};
use ringfs_common::ipc::{self, CallId, ClientFrame, RemoteError, Response};
use ringfs_common::limits::{PACKET_HEADER_SIZE_MAX, RPC_FRAME_SIZE_MAX};
use ringfs_common::proto::common::{RpcResponseHeaderProto, TokenProto};
use ringfs_common::proto::hdfs::{
    DirectoryListingProto, ExtendedBlockProto, GetFileInfoResponseProto, HdfsFileStatusProto,
    LocatedBlockProto, PipelineAckProto, Status,
};

/// Field numbers present in an encoded message (top level only).
fn field_numbers(mut bytes: &[u8]) -> Vec<u32> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = prost::encoding::decode_varint(&mut bytes).unwrap();
        let (number, wire_type) = ((key >> 3) as u32, key & 7);
        fields.push(number);
        match wire_type {
            0 => {
                prost::encoding::decode_varint(&mut bytes).unwrap();
            }
            1 => bytes = &bytes[8..],
            2 => {
                let len = prost::encoding::decode_varint(&mut bytes).unwrap() as usize;
                bytes = &bytes[len..];
            }
            5 => bytes = &bytes[4..],
            other => panic!("unexpected wire type {other}"),
        }
    }
    fields
}

/// Pitfall 1: Java's proto2 parser rejects responses missing a required field, even when
/// its value is the default. prost must emit them.
#[test]
fn required_fields_are_encoded_even_when_default() {
    let status = HdfsFileStatusProto::default();
    let fields = field_numbers(&status.encode_to_vec());
    for required in [1, 2, 3, 4, 5, 6, 7, 8] {
        assert!(fields.contains(&required), "HdfsFileStatusProto field {required} missing: {fields:?}");
    }
    let token = TokenProto::default();
    assert_eq!(field_numbers(&token.encode_to_vec()), vec![1, 2, 3, 4], "all four token fields present");
    let located = LocatedBlockProto { b: ExtendedBlockProto::default(), ..Default::default() };
    let fields = field_numbers(&located.encode_to_vec());
    for required in [1, 2, 4, 5] {
        assert!(fields.contains(&required), "LocatedBlockProto field {required} missing: {fields:?}");
    }
    let listing = DirectoryListingProto::default();
    assert_eq!(field_numbers(&listing.encode_to_vec()), vec![2], "remainingEntries present");
}

/// Pitfall 3: a missing path is an empty getFileInfo response, not an exception.
#[test]
fn missing_path_is_an_empty_response() {
    let response = GetFileInfoResponseProto { fs: None };
    assert!(response.encode_to_vec().is_empty());
    let mut frame = Vec::new();
    let call = CallId { call_id: 7, client_id: Bytes::new(), retry_count: 0 };
    ipc::encode_response(&call, &response, &mut frame);
    // Pitfall 4: the body of an empty SUCCESS response is still delimited: a single 0x00.
    assert_eq!(*frame.last().unwrap(), 0x00);
    let decoded = Response::decode(Bytes::copy_from_slice(&frame[4..]), RPC_FRAME_SIZE_MAX).unwrap();
    assert_eq!(decoded.outcome, Ok(Bytes::new()));
}

/// Pitfall 15: the response callId is uint32 on the wire: Java writes -33 as a 5-byte
/// varint, and decoders cast it back to i32.
#[test]
fn negative_call_ids_round_trip_as_uint32() {
    let mut frame = Vec::new();
    let sasl = ringfs_common::proto::common::RpcSaslProto { state: 0, ..Default::default() };
    ipc::encode_sasl_response(&sasl, &mut frame);
    let body = &frame[4..];
    let header_len = body[0] as usize;
    let header = RpcResponseHeaderProto::decode(&body[1..1 + header_len]).unwrap();
    assert_eq!(header.call_id, (-33i32) as u32);
    assert_eq!(&body[1..7], &[0x08, 0xDF, 0xFF, 0xFF, 0xFF, 0x0F], "field 1 as a 5-byte varint");
    let decoded = Response::decode(Bytes::copy_from_slice(body), RPC_FRAME_SIZE_MAX).unwrap();
    assert_eq!(decoded.call_id, -33);
}

/// Request call ids are sint32 (zigzag): -3 is one byte, 5.
#[test]
fn request_call_ids_are_zigzag() {
    let mut frame = Vec::new();
    ipc::encode_connection_context(&[1; 16], "alice", ipc::protocol::CLIENT, &mut frame);
    let body = Bytes::copy_from_slice(&frame[4..]);
    // header: rpcKind (08 02), rpcOp (10 00), callId (18 05)
    assert_eq!(&body[1..7], &[0x08, 0x02, 0x10, 0x00, 0x18, 0x05]);
    match ClientFrame::decode(body, RPC_FRAME_SIZE_MAX).unwrap() {
        ClientFrame::ConnectionContext { header, context } => {
            assert_eq!(header.call_id, -3);
            assert_eq!(context.user_info.unwrap().effective_user.as_deref(), Some("alice"));
        }
        other => panic!("expected a connection context, got {other:?}"),
    }
}

/// Pitfall 4: nothing may follow the header of an ERROR response.
#[test]
fn error_responses_carry_only_the_header() {
    let mut frame = Vec::new();
    let call = CallId { call_id: 3, client_id: Bytes::from_static(&[9; 16]), retry_count: 0 };
    let error = RemoteError::new(ipc::exception::FILE_NOT_FOUND, "File does not exist: /x");
    ipc::encode_error(&call, &error, false, &mut frame);
    let body = &frame[4..];
    let header_len = body[0] as usize;
    assert_eq!(body.len(), 1 + header_len, "no bytes after the header");
    let decoded = Response::decode(Bytes::copy_from_slice(body), RPC_FRAME_SIZE_MAX).unwrap();
    assert_eq!(decoded.outcome, Err(error));
    assert!(!decoded.fatal);
}

/// Pitfall 19: an unknown method is an ordinary ERROR with Java's message.
#[test]
fn unknown_method_error_names_method_and_protocol() {
    let error = RemoteError::no_such_method("getEnclosingRoot", ipc::protocol::CLIENT);
    assert_eq!(error.class_name, "org.apache.hadoop.ipc.RpcNoSuchMethodException");
    assert_eq!(
        error.message,
        "Unknown method getEnclosingRoot called on org.apache.hadoop.hdfs.protocol.ClientProtocol protocol."
    );
}

/// Pitfall 5: acks carry both `reply` and `flag`; Java reads flag, hdfs-native reads reply.
#[test]
fn acks_fill_reply_and_flag_consistently() {
    let ack = pipeline_ack(12, &[Status::Success, Status::ErrorChecksum]);
    assert_eq!(ack.reply, vec![Status::Success as i32, Status::ErrorChecksum as i32]);
    assert_eq!(ack.flag, vec![0, Status::ErrorChecksum as u32]);
    assert_eq!(ack_statuses(&ack), vec![Status::Success, Status::ErrorChecksum]);
    // flag wins when present (ECN bits above the status nibble are ignored)...
    let java =
        PipelineAckProto { seqno: 1, reply: vec![1], downstream_ack_time_nanos: None, flag: vec![0x20] };
    assert_eq!(ack_status(&java, 0), Some(Status::Success));
    // ...and reply is used when flags are absent.
    let native = PipelineAckProto { seqno: 1, reply: vec![6], downstream_ack_time_nanos: None, flag: vec![] };
    assert_eq!(ack_status(&native, 0), Some(Status::ChecksumOk));
    // flag is packed on the wire: field 4, wire type 2.
    let bytes = ack.encode_to_vec();
    assert!(bytes.windows(2).any(|w| w == [0x22, 0x02]), "packed flag field: {bytes:02x?}");
}

/// The packet header bound hdfs-native and Java both assume: 27 bytes + PLEN + HLEN.
#[test]
fn packet_header_size_max_is_pinned() {
    let header = PacketHeader {
        offset_in_block: i64::MAX,
        seqno: i64::MAX,
        last_packet_in_block: true,
        data_len: i32::MAX,
        sync_block: true,
    };
    assert_eq!(header.encoded_prefix_len(), PACKET_HEADER_SIZE_MAX);
}
