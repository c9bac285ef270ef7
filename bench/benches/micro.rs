//! Criterion micro-benchmarks of the hot-path building blocks: chunked CRC32C, the
//! DataTransferProtocol packet codec, the IPC frame decoders, and the datanode's ring.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringfs_common::checksum::DataChecksum;
use ringfs_common::dtp::{Packet, PacketHeader, PacketLayout};
use ringfs_common::ipc::{self, CallId, ClientFrame, Response};
use ringfs_common::limits::{READ_PACKET_DATA_SIZE, RPC_FRAME_SIZE_MAX, WRITE_PACKET_DATA_SIZE};
use ringfs_common::proto::hdfs::{GetFileInfoRequestProto, GetFileInfoResponseProto, HdfsFileStatusProto};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 + 7) as u8).collect()
}

fn crc32c(c: &mut Criterion) {
    let checksum = DataChecksum::CRC32C_512;
    let mut group = c.benchmark_group("crc32c_512");
    for size in [WRITE_PACKET_DATA_SIZE, 1024 * 1024] {
        let data = pattern(size);
        let mut sums = vec![0u8; checksum.checksum_len(size)];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("compute", size), &data, |b, data| {
            b.iter(|| checksum.compute(black_box(data), &mut sums))
        });
        let stored = checksum.compute_vec(&data);
        group.bench_with_input(BenchmarkId::new("verify", size), &data, |b, data| {
            b.iter(|| checksum.verify(black_box(data), black_box(&stored), 0).expect("checksums match"))
        });
    }
    group.finish();
}

/// A full write packet as the Java client sends it: 126 chunks and their CRCs.
fn write_packet_bytes(data: &[u8], sums: &[u8]) -> Vec<u8> {
    let header = PacketHeader {
        offset_in_block: 64 * 1024 * 1024,
        seqno: 1000,
        last_packet_in_block: false,
        data_len: data.len() as i32,
        sync_block: false,
    };
    let mut out = Vec::with_capacity(data.len() + sums.len() + 64);
    Packet { header, checksums: sums, data }.encode(&mut out);
    out
}

fn packet_codec(c: &mut Criterion) {
    let checksum = DataChecksum::CRC32C_512;
    let mut group = c.benchmark_group("dtp_packet");
    for size in [WRITE_PACKET_DATA_SIZE, READ_PACKET_DATA_SIZE] {
        let data = pattern(size);
        let sums = checksum.compute_vec(&data);
        let wire = write_packet_bytes(&data, &sums);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        let mut out = Vec::with_capacity(wire.len());
        group.bench_with_input(BenchmarkId::new("encode", size), &data, |b, data| {
            b.iter(|| {
                out.clear();
                let header = PacketHeader { data_len: data.len() as i32, seqno: 7, ..Default::default() };
                Packet { header, checksums: &sums, data }.encode(&mut out);
                black_box(out.len())
            })
        });
        group.bench_with_input(BenchmarkId::new("decode_layout", size), &wire, |b, wire| {
            b.iter(|| {
                PacketLayout::decode(black_box(wire), Some(checksum)).expect("valid").expect("complete")
            })
        });
        group.bench_with_input(BenchmarkId::new("decode_verify", size), &wire, |b, wire| {
            b.iter(|| {
                let (packet, _) =
                    Packet::decode(black_box(wire), Some(checksum)).expect("valid").expect("whole");
                packet.verify(checksum).expect("checksums match");
            })
        });
    }
    group.finish();
}

fn rpc_frames(c: &mut Criterion) {
    let client_id = [7u8; 16];
    let request = GetFileInfoRequestProto { src: "/user/bench/dir-0042/file-000123".into() };
    let mut call = Vec::new();
    ipc::encode_call(42, &client_id, "getFileInfo", ipc::protocol::CLIENT, &request, &mut call);
    let call_body = Bytes::copy_from_slice(&call[ipc::FRAME_LENGTH_SIZE..]);

    let status = HdfsFileStatusProto {
        path: Bytes::from_static(b"file-000123"),
        length: 134_217_728,
        owner: "bench".into(),
        group: "supergroup".into(),
        ..Default::default()
    };
    let response = GetFileInfoResponseProto { fs: Some(status) };
    let call_id = CallId { call_id: 42, client_id: Bytes::copy_from_slice(&client_id), retry_count: 0 };
    let mut reply = Vec::new();
    ipc::encode_response(&call_id, &response, &mut reply);
    let reply_body = Bytes::copy_from_slice(&reply[ipc::FRAME_LENGTH_SIZE..]);

    let mut group = c.benchmark_group("ipc_frame");
    group.throughput(Throughput::Bytes(call.len() as u64));
    group.bench_function("decode_call_getFileInfo", |b| {
        b.iter(|| {
            let (size, consumed) = ipc::split_frame(black_box(&call), RPC_FRAME_SIZE_MAX).unwrap().unwrap();
            debug_assert_eq!(consumed, size + ipc::FRAME_LENGTH_SIZE);
            ClientFrame::decode(call_body.clone(), RPC_FRAME_SIZE_MAX).expect("valid call")
        })
    });
    group.throughput(Throughput::Bytes(reply.len() as u64));
    group.bench_function("decode_response_getFileInfo", |b| {
        b.iter(|| {
            Response::decode(black_box(reply_body.clone()), RPC_FRAME_SIZE_MAX).expect("valid response")
        })
    });
    group.bench_function("encode_call_getFileInfo", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            ipc::encode_call(
                42,
                &client_id,
                "getFileInfo",
                ipc::protocol::CLIENT,
                black_box(&request),
                &mut out,
            );
            black_box(out.len())
        })
    });
    group.finish();
}

/// Round trips through the datanode's ring (`ringfs_datanode::io`): a NOP, and a
/// READ_FIXED of 64 KiB from a page-cached file into a registered buffer. Skipped, with
/// the reason printed, where io_uring is unavailable.
fn ring(c: &mut Criterion) {
    use ringfs_datanode::io::{probe, RingConfig, Runtime};
    use std::os::fd::AsFd;
    use std::time::Instant;

    const READ_SIZE: usize = 64 * 1024;
    const FILE_SIZE: usize = 16 * 1024 * 1024;
    let config = RingConfig::default();
    if let Err(why) = probe(config.locked_bytes()) {
        eprintln!("ring benchmarks skipped: io_uring unavailable: {why}");
        return;
    }
    let runtime = match Runtime::new(&config) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ring benchmarks skipped: ring setup failed: {e}");
            return;
        }
    };
    let io = runtime.io().clone();
    let mut group = c.benchmark_group("ring");
    group.bench_function("nop_round_trip", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    io.nop().await.expect("nop");
                }
                start.elapsed()
            })
        })
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("blk_1073741825");
    std::fs::write(&path, pattern(FILE_SIZE)).expect("write the block file");
    let file = std::fs::File::open(&path).expect("open the block file");
    let fixed = io.files().install(file.as_fd()).expect("fixed file slot");
    group.throughput(Throughput::Bytes(READ_SIZE as u64));
    group.bench_function("read_fixed_64k_page_cached", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut slot = io.packet_arena().acquire(READ_SIZE).await.expect("packet slot");
                let start = Instant::now();
                for i in 0..iters {
                    let offset = (i as usize * READ_SIZE) % FILE_SIZE;
                    let (read, back) = io.read_fixed(&fixed, slot, 0, READ_SIZE, offset as u64).await;
                    assert_eq!(read.expect("read_fixed"), READ_SIZE);
                    slot = back;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, crc32c, packet_codec, rpc_frames, ring);
criterion_main!(benches);
