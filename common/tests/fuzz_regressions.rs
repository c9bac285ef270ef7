//! Replays every stored fuzz input (fuzz/corpus/<target>/ and fuzz/regressions/<target>/)
//! through the same oracles the cargo-fuzz targets run, on the stable toolchain, so
//! `cargo test` catches a regression without libFuzzer. Allocation caps are checked with
//! the fuzzers' counting allocator. Also: unit tests for what the fuzzers found, and the
//! seed generator (`cargo test -p ringfs-common --test fuzz_regressions -- --ignored`).

#[path = "../../fuzz/src/capped_alloc.rs"]
#[allow(dead_code)]
mod capped_alloc;
#[path = "../../fuzz/src/structured.rs"]
#[allow(dead_code)]
mod structured;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use prost::Message;
use ringfs_common::checksum::{ChecksumKind, DataChecksum, MetaHeader};
use ringfs_common::dtp::{self, OpRequest, Packet, PacketHeader};
use ringfs_common::fuzzing::{self, all_methods, protocol_methods};
use ringfs_common::ipc::{self, exception, CallId, IpcError, RemoteError};
use ringfs_common::limits::{
    PACKET_HEADER_SIZE_MAX, PACKET_SIZE_MAX, RPC_FRAME_SIZE_MAX, RPC_HEADER_SIZE_MAX,
};
use ringfs_common::proto::common::{
    rpc_sasl_proto::SaslState, RpcRequestHeaderProto, RpcSaslProto, TokenProto,
};
use ringfs_common::proto::hdfs::{self, datanode as dn, Status};

#[global_allocator]
static ALLOCATOR: capped_alloc::CappedAllocator = capped_alloc::CappedAllocator;

/// Tests here share the allocator's limit, so they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// How much of an oracle's panic message a failure report keeps.
const MESSAGE_CHARS_MAX: usize = 2000;

/// Targets whose oracles need the namenode crate (fuzz/src/namenode.rs), which
/// ringfs-common cannot depend on: `scripts/fuzz.sh --replay` replays their inputs.
const NAMENODE_TARGETS: [&str; 4] = ["edit_log", "image", "edit_log_structured", "image_structured"];

/// Runs one input through the oracle of `target`; Err names what broke.
fn run_one(target: &str, input: &[u8]) -> Result<(), String> {
    capped_alloc::record_instead_of_abort();
    let _ = capped_alloc::take_excess();
    let outcome = if let Some(t) = fuzzing::target(target) {
        let limit = fuzzing::allocation_limit(t.allocation_cap, input.len());
        catch_unwind(AssertUnwindSafe(|| capped_alloc::with_allocation_limit(limit, || (t.oracle)(input))))
    } else if let Some(t) = structured::target(target) {
        catch_unwind(AssertUnwindSafe(|| (t.run)(input)))
    } else {
        return Err(format!("no oracle for target directory {target:?}"));
    };
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        // Values in assertion messages can be megabytes of packet data.
        let message: String = message.chars().take(MESSAGE_CHARS_MAX).collect();
        return Err(format!("oracle failed: {message}"));
    }
    if let Some(size) = capped_alloc::take_excess() {
        return Err(format!("allocation of {size} bytes over the target's limit"));
    }
    Ok(())
}

/// Replays every file under `fuzz/<kind>/<target>/`; returns how many ran.
fn replay(kind: &str) -> usize {
    let root = fuzz_dir().join(kind);
    let Ok(targets) = fs::read_dir(&root) else { return 0 };
    let mut failures = Vec::new();
    let mut count = 0;
    let mut dirs: Vec<PathBuf> =
        targets.map(|e| e.expect("dir entry").path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for dir in dirs {
        let target = dir.file_name().expect("name").to_string_lossy().into_owned();
        if NAMENODE_TARGETS.contains(&target.as_str()) {
            continue;
        }
        let mut files: Vec<PathBuf> =
            fs::read_dir(&dir).expect("read target dir").map(|e| e.expect("entry").path()).collect();
        files.sort();
        for file in files.into_iter().filter(|f| f.is_file()) {
            let input = fs::read(&file).expect("read input");
            count += 1;
            if let Err(e) = run_one(&target, &input) {
                failures.push(format!("{}: {e}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{} failing fuzz inputs:\n{}", failures.len(), failures.join("\n"));
    count
}

#[test]
fn corpus_and_regressions_replay_cleanly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let corpus = replay("corpus");
    let regressions = replay("regressions");
    assert!(corpus > 0, "no seed corpus under fuzz/corpus");
    eprintln!("replayed {corpus} corpus and {regressions} regression inputs");
}

#[test]
fn every_fuzz_target_has_an_oracle_and_seeds() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let targets = fs::read_dir(fuzz_dir().join("fuzz_targets")).expect("fuzz/fuzz_targets");
    let mut names: Vec<String> = targets
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= fuzzing::TARGETS.len() + structured::TARGETS.len() + NAMENODE_TARGETS.len());
    for name in names {
        assert!(
            fuzzing::target(&name).is_some()
                || structured::target(&name).is_some()
                || NAMENODE_TARGETS.contains(&name.as_str()),
            "fuzz target {name} has no oracle the replay knows"
        );
        let seeds = fs::read_dir(fuzz_dir().join("corpus").join(&name)).map(|d| d.count()).unwrap_or(0);
        assert!(seeds > 0, "fuzz target {name} has no seed corpus");
    }
}

#[test]
fn method_tables_name_each_method_once() {
    for protocol in [ipc::protocol::CLIENT, ipc::protocol::DATANODE, ipc::protocol::CLIENT_DATANODE] {
        let methods = protocol_methods(protocol).expect("known protocol");
        let mut names: Vec<&str> = methods.iter().map(|m| m.name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate method in {protocol}");
    }
    assert!(all_methods().count() < 256, "a selector byte must reach every method");
}

// ---------------------------------------------------------------------------------------
// Seeds: hand-built valid frames from the common encoders. Regenerate with
// `cargo test -p ringfs-common --test fuzz_regressions -- --ignored write_seed_corpus`.

fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn packet_bytes(header: PacketHeader, data: &[u8], checksum: DataChecksum) -> Vec<u8> {
    let checksums = checksum.compute_vec(data);
    let mut out = Vec::new();
    Packet { header, checksums: &checksums, data }.encode(&mut out);
    out
}

fn data_header(offset: i64, seqno: i64, data_len: usize, last: bool) -> PacketHeader {
    PacketHeader {
        offset_in_block: offset,
        seqno,
        last_packet_in_block: last,
        data_len: data_len as i32,
        sync_block: false,
    }
}

fn block(id: u64, num_bytes: u64) -> hdfs::ExtendedBlockProto {
    hdfs::ExtendedBlockProto {
        pool_id: "BP-1536713734-127.0.0.1-1700000000000".to_string(),
        block_id: id,
        generation_stamp: 1001,
        num_bytes: Some(num_bytes),
    }
}

fn empty_token() -> TokenProto {
    TokenProto {
        identifier: Bytes::new(),
        password: Bytes::new(),
        kind: String::new(),
        service: String::new(),
    }
}

fn client_header(id: u64) -> hdfs::ClientOperationHeaderProto {
    hdfs::ClientOperationHeaderProto {
        base_header: hdfs::BaseHeaderProto {
            block: block(id, 0),
            token: Some(empty_token()),
            trace_info: None,
        },
        client_name: "DFSClient_NONMAPREDUCE_-1180330433_1".to_string(),
    }
}

fn datanode(port: u32) -> hdfs::DatanodeInfoProto {
    hdfs::DatanodeInfoProto {
        id: hdfs::DatanodeIdProto {
            ip_addr: "127.0.0.1".to_string(),
            host_name: "localhost".to_string(),
            datanode_uuid: format!("5e1d2c3b-0000-4000-8000-00000000{port:04}"),
            xfer_port: port,
            info_port: 9864,
            ipc_port: 9867,
            info_secure_port: Some(0),
        },
        capacity: Some(1 << 40),
        location: Some("/default-rack".to_string()),
        admin_state: Some(0),
        ..Default::default()
    }
}

fn file_status(path: &str, length: u64) -> hdfs::HdfsFileStatusProto {
    hdfs::HdfsFileStatusProto {
        file_type: 2,
        path: Bytes::copy_from_slice(path.as_bytes()),
        length,
        permission: hdfs::FsPermissionProto { perm: 0o644 },
        owner: "alice".to_string(),
        group: "supergroup".to_string(),
        modification_time: 1_700_000_000_000,
        access_time: 1_700_000_000_000,
        block_replication: Some(3),
        blocksize: Some(134_217_728),
        file_id: Some(16386),
        children_num: Some(0),
        ..Default::default()
    }
}

fn write_packet_seeds() {
    let crc32c = DataChecksum::CRC32C_512;
    let crc32 = DataChecksum::new(ChecksumKind::Crc32, 512).expect("valid");
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
    for (name, len) in [("1", 1), ("511", 511), ("512", 512), ("513", 513), ("4096", 4096)] {
        write_seed(
            "packet",
            &format!("crc32c-{name}"),
            &packet_bytes(data_header(0, 0, len, false), &data[..len], crc32c),
        );
    }
    write_seed("packet", "crc32-1000", &packet_bytes(data_header(512, 3, 1000, false), &data[..1000], crc32));
    write_seed("packet", "last-empty", &packet_bytes(data_header(4096, 8, 0, true), &[], crc32c));
    write_seed("packet", "heartbeat", &packet_bytes(data_header(0, -1, 0, false), &[], crc32c));
    let mut synced = data_header(0, 1, 100, false);
    synced.sync_block = true;
    write_seed("packet", "sync", &packet_bytes(synced, &data[..100], crc32c));
    let mut stream = packet_bytes(data_header(0, 0, 1024, false), &data[..1024], crc32c);
    stream.extend(packet_bytes(data_header(1024, 1, 700, false), &data[1024..1724], crc32c));
    stream.extend(packet_bytes(data_header(1724, 2, 0, true), &[], crc32c));
    write_seed("packet", "stream", &stream);
    let mut bad = packet_bytes(data_header(0, 0, 600, false), &data[..600], crc32c);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    write_seed("packet", "bad-checksum", &bad);
}

fn write_dtp_seeds() {
    let mut out = Vec::new();
    for (name, seqno, statuses) in [
        ("single", 0, vec![Status::Success]),
        ("pipeline3", 7, vec![Status::Success; 3]),
        ("heartbeat", -1, vec![Status::Success, Status::Success]),
        ("error", 12, vec![Status::Success, Status::ErrorChecksum]),
        ("oob", -2, vec![Status::OobRestart]),
    ] {
        out.clear();
        dtp::encode_delimited(&dtp::pipeline_ack(seqno, &statuses), &mut out);
        write_seed("pipeline_ack", name, &out);
    }
    // hdfs-native style: reply only; and flags carrying ECN/SLOW bits.
    let reply_only =
        hdfs::PipelineAckProto { seqno: 3, reply: vec![0, 0], downstream_ack_time_nanos: None, flag: vec![] };
    out.clear();
    dtp::encode_delimited(&reply_only, &mut out);
    write_seed("pipeline_ack", "reply-only", &out);
    let flagged = hdfs::PipelineAckProto {
        seqno: 4,
        reply: vec![0],
        downstream_ack_time_nanos: Some(9),
        flag: vec![0x1a0],
    };
    out.clear();
    dtp::encode_delimited(&flagged, &mut out);
    write_seed("pipeline_ack", "ecn-slow", &out);

    let write = hdfs::OpWriteBlockProto {
        header: client_header(1_073_741_825),
        targets: vec![datanode(9866), datanode(9876)],
        source: None,
        stage: hdfs::op_write_block_proto::BlockConstructionStage::PipelineSetupCreate as i32,
        pipeline_size: 3,
        min_bytes_rcvd: 0,
        max_bytes_rcvd: 0,
        latest_generation_stamp: 0,
        requested_checksum: hdfs::ChecksumProto { r#type: 2, bytes_per_checksum: 512 },
        caching_strategy: Some(hdfs::CachingStrategyProto { drop_behind: None, readahead: None }),
        storage_type: Some(1),
        target_storage_types: vec![1, 1],
        allow_lazy_persist: Some(false),
        pinning: Some(false),
        target_pinnings: vec![false, false],
        storage_id: Some("DS-1".to_string()),
        target_storage_ids: vec!["DS-2".to_string(), "DS-3".to_string()],
    };
    let read = hdfs::OpReadBlockProto {
        header: client_header(1_073_741_826),
        offset: 0,
        len: 134_217_728,
        send_checksums: Some(true),
        caching_strategy: Some(hdfs::CachingStrategyProto { drop_behind: None, readahead: Some(4 << 20) }),
    };
    let base = hdfs::BaseHeaderProto {
        block: block(1_073_741_827, 1 << 20),
        token: Some(empty_token()),
        trace_info: None,
    };
    let ops = [
        ("write-block", OpRequest::WriteBlock(write)),
        ("read-block", OpRequest::ReadBlock(read)),
        (
            "block-checksum",
            OpRequest::BlockChecksum(hdfs::OpBlockChecksumProto {
                header: base.clone(),
                block_checksum_options: Some(hdfs::BlockChecksumOptionsProto {
                    block_checksum_type: Some(1),
                    stripe_length: None,
                }),
            }),
        ),
        ("copy-block", OpRequest::CopyBlock(hdfs::OpCopyBlockProto { header: base.clone() })),
        (
            "transfer-block",
            OpRequest::TransferBlock(hdfs::OpTransferBlockProto {
                header: client_header(5),
                targets: vec![datanode(9866)],
                target_storage_types: vec![1],
                target_storage_ids: vec!["DS-9".to_string()],
            }),
        ),
        (
            "replace-block",
            OpRequest::ReplaceBlock(hdfs::OpReplaceBlockProto {
                header: base,
                del_hint: "127.0.0.1:9866".to_string(),
                source: datanode(9866),
                storage_type: Some(2),
                storage_id: None,
            }),
        ),
        ("short-circuit", OpRequest::Unsupported(dtp::Op::RequestShortCircuitFds)),
    ];
    for (name, op) in ops {
        out.clear();
        op.encode(&mut out);
        write_seed("dtp_op", name, &out);
    }

    let messages: [(&str, Vec<u8>); 5] = [
        (
            "checksum-ok",
            hdfs::ClientReadStatusProto { status: Status::ChecksumOk as i32 }
                .encode_length_delimited_to_vec(),
        ),
        (
            "read-response",
            hdfs::BlockOpResponseProto {
                status: Status::Success as i32,
                read_op_checksum_info: Some(hdfs::ReadOpChecksumInfoProto {
                    checksum: hdfs::ChecksumProto { r#type: 2, bytes_per_checksum: 512 },
                    chunk_offset: 1024,
                }),
                ..Default::default()
            }
            .encode_length_delimited_to_vec(),
        ),
        (
            "checksum-response",
            hdfs::BlockOpResponseProto {
                status: Status::Success as i32,
                checksum_response: Some(hdfs::OpBlockChecksumResponseProto {
                    bytes_per_crc: 512,
                    crc_per_block: 2048,
                    block_checksum: Bytes::from_static(&[0x5a; 16]),
                    crc_type: Some(2),
                    block_checksum_options: None,
                }),
                ..Default::default()
            }
            .encode_length_delimited_to_vec(),
        ),
        (
            "error-response",
            hdfs::BlockOpResponseProto {
                status: Status::ErrorInvalid as i32,
                first_bad_link: Some("127.0.0.1:9876".to_string()),
                message: Some("Replica not found".to_string()),
                ..Default::default()
            }
            .encode_length_delimited_to_vec(),
        ),
        (
            "transfer-ack",
            hdfs::DnTransferAckProto { status: Status::Success as i32 }.encode_length_delimited_to_vec(),
        ),
    ];
    for (name, bytes) in messages {
        write_seed("read_status", name, &bytes);
    }
}

fn call(out: &mut Vec<u8>, call_id: i32, method: &str, protocol: &str, request: &impl Message) {
    ipc::encode_call(call_id, &[0x11; 16], method, protocol, request, out);
}

fn write_rpc_seeds() {
    let client = ipc::protocol::CLIENT;
    let preamble = ipc::Preamble { service_class: 0, auth: ipc::AuthProtocol::None }.encode();

    // A FsShell -put, as the Java client sends it.
    let mut put = preamble.to_vec();
    ipc::encode_connection_context(&[0x11; 16], "alice", client, &mut put);
    call(
        &mut put,
        0,
        "getFileInfo",
        client,
        &hdfs::GetFileInfoRequestProto { src: "/user/alice/f".to_string() },
    );
    call(
        &mut put,
        1,
        "create",
        client,
        &hdfs::CreateRequestProto {
            src: "/user/alice/f._COPYING_".to_string(),
            masked: hdfs::FsPermissionProto { perm: 0o644 },
            client_name: "DFSClient_NONMAPREDUCE_1_1".to_string(),
            create_flag: 3,
            create_parent: true,
            replication: 3,
            block_size: 134_217_728,
            crypto_protocol_version: vec![2],
            unmasked: Some(hdfs::FsPermissionProto { perm: 0o666 }),
            ec_policy_name: None,
            storage_policy: None,
        },
    );
    call(
        &mut put,
        2,
        "addBlock",
        client,
        &hdfs::AddBlockRequestProto {
            src: "/user/alice/f._COPYING_".to_string(),
            client_name: "DFSClient_NONMAPREDUCE_1_1".to_string(),
            previous: None,
            exclude_nodes: vec![datanode(9866)],
            file_id: Some(16386),
            favored_nodes: vec![],
            flags: vec![],
        },
    );
    call(
        &mut put,
        3,
        "complete",
        client,
        &hdfs::CompleteRequestProto {
            src: "/user/alice/f._COPYING_".to_string(),
            client_name: "DFSClient_NONMAPREDUCE_1_1".to_string(),
            last: Some(block(1_073_741_825, 4096)),
            file_id: Some(16386),
        },
    );
    call(
        &mut put,
        4,
        "rename",
        client,
        &hdfs::RenameRequestProto {
            src: "/user/alice/f._COPYING_".to_string(),
            dst: "/user/alice/f".to_string(),
        },
    );
    ipc::encode_ping(&[0x11; 16], &mut put);
    write_seed("rpc_server", "put", &put);

    let mut ls = preamble.to_vec();
    ipc::encode_connection_context(&[0x22; 16], "bob", client, &mut ls);
    call(
        &mut ls,
        0,
        "getListing",
        client,
        &hdfs::GetListingRequestProto {
            src: "/".to_string(),
            start_after: Bytes::new(),
            need_location: false,
        },
    );
    call(
        &mut ls,
        1,
        "mkdirs",
        client,
        &hdfs::MkdirsRequestProto {
            src: "/a/b".to_string(),
            masked: hdfs::FsPermissionProto { perm: 0o755 },
            create_parent: true,
            unmasked: Some(hdfs::FsPermissionProto { perm: 0o777 }),
        },
    );
    call(&mut ls, 2, "delete", client, &hdfs::DeleteRequestProto { src: "/a".to_string(), recursive: true });
    call(&mut ls, 3, "getServerDefaults", client, &hdfs::GetServerDefaultsRequestProto {});
    write_seed("rpc_server", "ls-mkdir-rm", &ls);

    // SASL-first client (tokens in the UGI) against a simple-auth server.
    let mut sasl = ipc::Preamble { service_class: 0, auth: ipc::AuthProtocol::Sasl }.encode().to_vec();
    let negotiate = RpcSaslProto { state: SaslState::Negotiate as i32, ..Default::default() };
    let start = sasl.len();
    sasl.extend_from_slice(&[0; 4]);
    let header = ringfs_common::proto::common::RpcRequestHeaderProto {
        rpc_kind: Some(2),
        rpc_op: Some(0),
        call_id: ipc::SASL_CALL_ID,
        client_id: Bytes::new(),
        retry_count: Some(-1),
        ..Default::default()
    };
    header.encode_length_delimited(&mut sasl).expect("vec");
    negotiate.encode_length_delimited(&mut sasl).expect("vec");
    let size = (sasl.len() - start - 4) as u32;
    sasl[start..start + 4].copy_from_slice(&size.to_be_bytes());
    ipc::encode_connection_context(&[0x33; 16], "carol", client, &mut sasl);
    call(&mut sasl, 0, "getFileInfo", client, &hdfs::GetFileInfoRequestProto { src: "/".to_string() });
    write_seed("rpc_server", "sasl-negotiate", &sasl);

    // A datanode registering and reporting.
    let datanode_protocol = ipc::protocol::DATANODE;
    let registration = dn::DatanodeRegistrationProto {
        datanode_id: datanode(9866).id,
        software_version: "3.5.0".to_string(),
        ..Default::default()
    };
    let mut dn_conn = preamble.to_vec();
    ipc::encode_connection_context(&[0x44; 16], "hdfs", datanode_protocol, &mut dn_conn);
    call(&mut dn_conn, 0, "versionRequest", datanode_protocol, &dn::VersionRequestProto {});
    call(
        &mut dn_conn,
        1,
        "registerDatanode",
        datanode_protocol,
        &dn::RegisterDatanodeRequestProto { registration: registration.clone() },
    );
    call(
        &mut dn_conn,
        2,
        "blockReport",
        datanode_protocol,
        &dn::BlockReportRequestProto {
            registration: registration.clone(),
            block_pool_id: "BP-1".to_string(),
            reports: vec![dn::StorageBlockReportProto {
                storage: hdfs::DatanodeStorageProto {
                    storage_uuid: "DS-1".to_string(),
                    state: None,
                    storage_type: Some(1),
                },
                blocks: vec![1, 0, 1_073_741_825, 4096, 1001, u64::MAX, u64::MAX, u64::MAX],
                number_of_blocks: Some(1),
                blocks_buffers: vec![],
            }],
            context: None,
        },
    );
    call(
        &mut dn_conn,
        3,
        "sendHeartbeat",
        datanode_protocol,
        &dn::HeartbeatRequestProto { registration, ..Default::default() },
    );
    write_seed("rpc_server", "datanode", &dn_conn);

    // Every method by name, empty payloads: the names the fuzzer needs to reach each decoder.
    for protocol in [client, datanode_protocol, ipc::protocol::CLIENT_DATANODE] {
        let mut conn = preamble.to_vec();
        ipc::encode_connection_context(&[0x55; 16], "dave", protocol, &mut conn);
        for (i, method) in protocol_methods(protocol).expect("known").iter().enumerate() {
            call(&mut conn, i as i32, method.name, protocol, &hdfs::MsyncRequestProto {});
        }
        write_seed(
            "rpc_server",
            &format!("all-methods-{}", protocol.rsplit('.').next().expect("name")),
            &conn,
        );
    }
    // Method mode: selector byte + request message.
    let get_file_info = all_methods().position(|m| m.name == "getFileInfo").expect("listed") as u8;
    let mut direct = vec![get_file_info];
    hdfs::GetFileInfoRequestProto { src: "/x".to_string() }.encode(&mut direct).expect("vec");
    write_seed("rpc_server", "method-getFileInfo", &direct);

    // What a client reads back.
    let call_id = |id| CallId { call_id: id, client_id: Bytes::from_static(&[0x11; 16]), retry_count: 0 };
    let mut responses = vec![get_file_info];
    ipc::encode_response(
        &call_id(0),
        &hdfs::GetFileInfoResponseProto { fs: Some(file_status("", 4096)) },
        &mut responses,
    );
    ipc::encode_response(&call_id(1), &hdfs::GetFileInfoResponseProto { fs: None }, &mut responses);
    ipc::encode_error(
        &call_id(2),
        &RemoteError::new(exception::FILE_NOT_FOUND, "File does not exist: /nope"),
        false,
        &mut responses,
    );
    ipc::encode_error(&call_id(3), &RemoteError::no_such_method("frobnicate", client), false, &mut responses);
    ipc::encode_sasl_response(
        &RpcSaslProto { state: SaslState::Success as i32, ..Default::default() },
        &mut responses,
    );
    write_seed("rpc_client", "getFileInfo", &responses);

    let get_listing = all_methods().position(|m| m.name == "getListing").expect("listed") as u8;
    let mut listing = vec![get_listing];
    ipc::encode_response(
        &call_id(0),
        &hdfs::GetListingResponseProto {
            dir_list: Some(hdfs::DirectoryListingProto {
                partial_listing: vec![file_status("a", 1), file_status("b", 2)],
                remaining_entries: 0,
            }),
        },
        &mut listing,
    );
    let fatal = RemoteError {
        class_name: exception::VERSION_MISMATCH.to_string(),
        message: "Server IPC version 9 cannot communicate with client version 4".to_string(),
        detail:
            ringfs_common::proto::common::rpc_response_header_proto::RpcErrorCodeProto::FatalVersionMismatch,
    };
    ipc::encode_error(
        &CallId { call_id: ipc::FATAL_CALL_ID, client_id: Bytes::new(), retry_count: -1 },
        &fatal,
        true,
        &mut listing,
    );
    write_seed("rpc_client", "getListing-fatal", &listing);

    let add_block = all_methods().position(|m| m.name == "addBlock").expect("listed") as u8;
    let mut added = vec![add_block];
    ipc::encode_response(
        &call_id(5),
        &hdfs::AddBlockResponseProto {
            block: hdfs::LocatedBlockProto {
                b: block(1_073_741_825, 0),
                offset: 0,
                locs: vec![datanode(9866), datanode(9876)],
                corrupt: false,
                block_token: empty_token(),
                storage_types: vec![1, 1],
                storage_i_ds: vec!["DS-1".to_string(), "DS-2".to_string()],
                ..Default::default()
            },
        },
        &mut added,
    );
    write_seed("rpc_client", "addBlock", &added);
}

fn write_meta_seeds() {
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    for (name, kind, bytes_per_checksum, len) in [
        ("crc32c-512", ChecksumKind::Crc32c, 512, 3000),
        ("crc32-512", ChecksumKind::Crc32, 512, 1024),
        ("null", ChecksumKind::Null, 512, 100),
        ("crc32c-100", ChecksumKind::Crc32c, 100, 250),
        ("empty-block", ChecksumKind::Crc32c, 512, 0),
    ] {
        let checksum = DataChecksum::new(kind, bytes_per_checksum).expect("valid");
        let mut meta = MetaHeader { checksum }.encode().to_vec();
        meta.extend_from_slice(&(len as u16).to_le_bytes());
        meta.extend_from_slice(&data[..len]);
        meta.extend(checksum.compute_vec(&data[..len]));
        write_seed("block_meta", name, &meta);
    }
}

/// Pseudo-random bytes for the structure-aware targets (whose inputs are not frames).
fn write_structured_seeds() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for target in structured::TARGETS {
        for (i, len) in [16usize, 64, 256, 1024].into_iter().enumerate() {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state =
                        state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    (state >> 56) as u8
                })
                .collect();
            write_seed(target.name, &format!("random-{i}"), &bytes);
        }
    }
}

fn method_selector(method: &str) -> Option<u8> {
    all_methods().position(|m| m.name == method).map(|i| i as u8)
}

/// Seeds from the golden captures of the real clients (common/tests/data): each unit goes
/// to the target that reads it, whole connections to the connection-level targets.
fn write_golden_seeds() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let Ok(clients) = fs::read_dir(&data) else { return };
    for client in clients.map(|e| e.expect("entry").path()).filter(|p| p.is_dir()) {
        let mut scenarios: Vec<PathBuf> =
            fs::read_dir(&client).expect("client dir").map(|e| e.expect("entry").path()).collect();
        scenarios.sort();
        for scenario in scenarios.into_iter().filter(|p| p.join("manifest.txt").is_file()) {
            let name = |file: &str| {
                let stem = file.trim_end_matches(".bin").replace(['/', '.'], "-");
                format!(
                    "golden-{}-{}-{stem}",
                    client.file_name().expect("name").to_string_lossy(),
                    scenario.file_name().expect("name").to_string_lossy()
                )
            };
            let manifest = fs::read_to_string(scenario.join("manifest.txt")).expect("manifest");
            let mut first_response_method = None;
            let mut reads = false;
            for line in manifest.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (kind, file, method) = (fields[2], fields[3], fields.get(4).copied());
                let bytes = fs::read(scenario.join(file)).expect("unit file");
                let with_selector = |selector: u8, bytes: &[u8]| {
                    let mut seed = vec![selector];
                    seed.extend_from_slice(bytes);
                    seed
                };
                match kind {
                    "call" => {
                        let frame =
                            ipc::ClientFrame::decode(Bytes::copy_from_slice(&bytes[4..]), RPC_FRAME_SIZE_MAX);
                        if let (Ok(ipc::ClientFrame::Call { payload, .. }), Some(selector)) =
                            (frame, method.and_then(method_selector))
                        {
                            write_seed("rpc_server", &name(file), &with_selector(selector, &payload));
                        }
                    }
                    "response" => {
                        let selector = method.and_then(method_selector).unwrap_or(0);
                        first_response_method.get_or_insert(selector);
                        write_seed("rpc_client", &name(file), &with_selector(selector, &bytes));
                    }
                    "sasl-response" => write_seed("rpc_client", &name(file), &with_selector(0, &bytes)),
                    "write-op" | "read-op" => write_seed("dtp_op", &name(file), &bytes),
                    "op-response" | "read-status" => write_seed("read_status", &name(file), &bytes),
                    "packet" => write_seed("packet", &name(file), &bytes),
                    "read-packet" => {
                        reads = true;
                        write_seed("packet", &name(file), &bytes);
                    }
                    "ack" => write_seed("pipeline_ack", &name(file), &bytes),
                    _ => {}
                }
            }
            // Whole connections.
            let Ok(raw) = fs::read_dir(scenario.join("raw")) else { continue };
            for stream in raw.map(|e| e.expect("entry").path()) {
                let file = format!("raw/{}", stream.file_name().expect("name").to_string_lossy());
                let bytes = fs::read(&stream).expect("raw stream");
                let stem = stream.file_name().expect("name").to_string_lossy().into_owned();
                if stem.starts_with("nn-") && stem.contains(".c2s.") {
                    write_seed("rpc_server", &name(&file), &bytes);
                } else if stem.starts_with("nn-") {
                    let mut seed = vec![first_response_method.unwrap_or(0)];
                    seed.extend_from_slice(&bytes);
                    write_seed("rpc_client", &name(&file), &seed);
                } else if stem.contains(".c2s.") {
                    // The op, then the client's packets (writes) or its read status.
                    if let Ok(Some((_, used))) = OpRequest::decode(&bytes) {
                        let target = if reads { "read_status" } else { "packet" };
                        write_seed(target, &name(&file), &bytes[used..]);
                    }
                } else if let Ok(Some((_, used))) =
                    dtp::decode_delimited::<hdfs::BlockOpResponseProto>(&bytes, "response")
                {
                    // The op response, then packets (reads) or acks (writes).
                    let target = if reads { "packet" } else { "pipeline_ack" };
                    write_seed(target, &name(&file), &bytes[used..]);
                }
            }
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus seeds; run by hand after changing the encoders or the captures"]
fn write_seed_corpus() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    write_packet_seeds();
    write_dtp_seeds();
    write_rpc_seeds();
    write_meta_seeds();
    write_structured_seeds();
    write_golden_seeds();
}

// ---------------------------------------------------------------------------------------
// What the fuzzers found. Each input is also kept under fuzz/regressions/<target>/.

/// rpc_server, rpc_client (fuzz/regressions/rpc_*/truncated-*): a delimited message cut
/// short reported its varint prefix among the available bytes, e.g. "needs 5 bytes,
/// frame has 5" for a 5-byte message with 4 bytes behind its prefix.
#[test]
fn truncated_message_error_counts_only_message_bytes() {
    let short = || Bytes::from_static(&[0x05, 1, 2, 3, 4]);
    let header = ipc::take_delimited::<RpcRequestHeaderProto>(&mut short(), "header", RPC_HEADER_SIZE_MAX);
    assert!(
        matches!(header, Err(IpcError::Truncated { needed: 5, available: 4, .. })),
        "take_delimited: {header:?}"
    );
    let payload = ipc::take_delimited_bytes(&mut short(), "request", RPC_FRAME_SIZE_MAX);
    assert!(
        matches!(payload, Err(IpcError::Truncated { needed: 5, available: 4, .. })),
        "take_delimited_bytes: {payload:?}"
    );
    let frame = ipc::ClientFrame::decode(short(), RPC_FRAME_SIZE_MAX);
    assert!(matches!(frame, Err(IpcError::Truncated { needed: 5, available: 4, .. })), "{frame:?}");
    let response = ipc::Response::decode(short(), RPC_FRAME_SIZE_MAX);
    assert!(matches!(response, Err(IpcError::Truncated { needed: 5, available: 4, .. })), "{response:?}");
}

/// block_meta (fuzz/regressions/block_meta/meta-len-overflow): `meta_file_len` multiplied
/// past u64 for a block length a client can claim (BLOCK_CHECKSUM's numBytes) with small
/// chunks: a panic with overflow checks, a wrong length without.
#[test]
fn meta_file_len_saturates_instead_of_overflowing() {
    let one_byte_chunks = MetaHeader { checksum: DataChecksum::new(ChecksumKind::Crc32c, 1).expect("valid") };
    assert_eq!(one_byte_chunks.meta_file_len(u64::MAX), u64::MAX);
    assert_eq!(one_byte_chunks.meta_file_len(i64::MAX as u64), u64::MAX);
    assert_eq!(one_byte_chunks.meta_file_len(10), 7 + 10 * 4);
    let default = MetaHeader { checksum: DataChecksum::CRC32C_512 };
    assert_eq!(default.meta_file_len(0), 7);
    assert_eq!(default.meta_file_len(1025), 7 + 3 * 4);
    assert_eq!(default.meta_file_len(u64::MAX), 7 + u64::MAX.div_ceil(512) * 4);
}

/// packet (fuzz/regressions/packet/payload-beyond-encoder-bound): PacketLayout::decode
/// capped PLEN + HLEN + header at 16 MiB, but PacketHeader::encode_prefix (which forwards
/// and re-encodes packets) asserts room for the largest header, so a packet with a short
/// header and a payload within 33 bytes of the cap decoded and then panicked on re-encoding.
#[test]
fn decoder_accepts_only_packets_the_encoder_can_write() {
    let payload_max = PACKET_SIZE_MAX - PACKET_HEADER_SIZE_MAX;
    for (payload_len, header_len) in
        [(payload_max + 1, 0u16), (PACKET_SIZE_MAX - 5, 0), (payload_max + 4, 25)]
    {
        let mut prefix = (payload_len as u32).to_be_bytes().to_vec();
        prefix.extend_from_slice(&header_len.to_be_bytes());
        let header = data_header(0, 0, 0, false);
        let mut encoded_header = Vec::new();
        header.encode_prefix(0, &mut encoded_header);
        prefix.extend_from_slice(&encoded_header[6..6 + usize::from(header_len)]);
        let layout = dtp::PacketLayout::decode(&prefix, None);
        assert!(
            matches!(layout, Err(dtp::DtpError::TooLarge { .. })),
            "payload {payload_len}, header {header_len}: {layout:?}"
        );
    }
    // The largest payload the encoder writes still decodes.
    let mut largest = Vec::new();
    data_header(0, 0, 0, false).encode_prefix(payload_max - 4, &mut largest);
    let layout = dtp::PacketLayout::decode(&largest, None).expect("within the cap").expect("prefix complete");
    assert_eq!(layout.checksum_len, payload_max - 4);
    assert!(layout.total_len() <= PACKET_SIZE_MAX);
}
