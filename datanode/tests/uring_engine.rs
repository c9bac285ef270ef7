//! The io_uring engine beyond what `dtp_engines.rs` runs on every engine: it really is the
//! engine serving when asked, both read modes and zero-copy mirror forwarding give the
//! same bytes, and (ignored by default, run with `--release -- --ignored`) the read-mode
//! experiment that picked the default: a 1 GiB hot read over loopback per mode.

// support::read_on hands back the server's error response as is (a large Err).
#![allow(clippy::result_large_err)]

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringfs_common::checksum::DataChecksum;
use ringfs_common::conf::Configuration;
use ringfs_common::dtp::OpRequest;
use ringfs_common::proto::hdfs::{ClientReadStatusProto, Status};
use ringfs_datanode::config::DataNodeConfig;
use ringfs_datanode::context::DataNodeContext;
use ringfs_datanode::engine::uring::{self, ReadMode, UringOptions};
use ringfs_datanode::engine::{self, EngineKind};
use ringfs_datanode::events::EventSink;
use ringfs_datanode::net::{read_packet, write_delimited};
use ringfs_datanode::store::{BlockStore, NamespaceIdentity, ReplicaState};
use support::*;

const MIB: usize = 1 << 20;

/// `None` (with the reason printed) where the kernel cannot run the engine.
fn uring_available() -> bool {
    match uring::probe() {
        Ok(()) => true,
        Err(why) => {
            println!("SKIP: io_uring engine unavailable: {why}");
            false
        }
    }
}

/// A datanode data port served by `uring::serve_with` with chosen options.
struct UringNode {
    _dir: tempfile::TempDir,
    ctx: Arc<DataNodeContext>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl UringNode {
    fn start(options: impl FnOnce(&mut UringOptions)) -> UringNode {
        let dir = tempfile::tempdir().unwrap();
        let mut conf = Configuration::new();
        conf.set("dfs.datanode.data.dir", dir.path().display().to_string());
        let config = DataNodeConfig::from_conf(&conf).unwrap();
        let store = BlockStore::open(&config.data_dirs, false).unwrap();
        let ns = NamespaceIdentity {
            block_pool_id: POOL.into(),
            cluster_id: "CID-test".into(),
            namespace_id: 42,
            ctime: 0,
        };
        store.attach_block_pool(&ns).unwrap();
        let (sink, _events) = EventSink::channel();
        let ctx = Arc::new(DataNodeContext::new(store, config, sink));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut uring_options = UringOptions::from_context(&ctx);
        options(&mut uring_options);
        let serve_ctx = Arc::clone(&ctx);
        let thread =
            std::thread::spawn(move || uring::serve_with(listener, serve_ctx, uring_options).unwrap());
        UringNode { _dir: dir, ctx, addr, thread: Some(thread) }
    }
}

impl Drop for UringNode {
    fn drop(&mut self) {
        self.ctx.request_shutdown();
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

#[test]
fn uring_is_the_engine_that_serves_when_asked() {
    if !uring_available() {
        return;
    }
    let node = TestNode::start(EngineKind::Uring);
    assert_eq!(node.ctx.metrics.engine.get().map(|info| info.name), Some("uring"));
    let data = pattern(100_000, 3);
    write_block(&[node.addr], 3, &data, 64_512);
    assert_eq!(read_block(node.addr, 3, 0, data.len() as u64).unwrap(), data);
    // `auto` picks io_uring here too, with no fallback reason.
    assert_eq!(engine::uring_unavailable(), None);
}

#[test]
fn both_read_modes_send_the_same_bytes() {
    if !uring_available() {
        return;
    }
    for mode in [ReadMode::Splice, ReadMode::ReadFixedSendZc, ReadMode::ReadFixedSend] {
        let node = UringNode::start(|options| {
            options.read_mode = mode;
            options.rings = 2;
        });
        let len = 2 * MIB + 777;
        let data = pattern(len, 11);
        write_block(&[node.addr], 11, &data, 64_512);
        let mut client = DtpClient::connect(node.addr);
        // Several reads on one connection (keepalive), at odd offsets and lengths.
        for (offset, count) in [(0, len), (1, 1), (511, 2), (513, 70_000), (65_535, MIB), (len - 10, 10)] {
            let read = read_on(&mut client, 11, offset as u64, count as u64).unwrap();
            assert!(read == data[offset..offset + count], "{mode:?} at {offset}+{count}");
        }
    }
}

#[test]
fn a_client_hanging_up_mid_read_leaves_the_node_serving() {
    if !uring_available() {
        return;
    }
    for mode in [ReadMode::ReadFixedSendZc, ReadMode::Splice, ReadMode::ReadFixedSend] {
        let node = UringNode::start(|options| {
            options.read_mode = mode;
            options.rings = 1;
        });
        let data = pattern(8 * MIB, 5);
        write_block(&[node.addr], 5, &data, 64_512);
        // Like snakebite or `-head`: take the first bytes and hang up mid-chain, many times
        // (a cancelled SEND_ZC link still gets its notification after its result).
        for _ in 0..20 {
            let mut client = DtpClient::connect(node.addr);
            client.send_op(OpRequest::ReadBlock(read_op(5, 1001, 0, data.len() as u64)));
            assert_eq!(client.response().status, Status::Success as i32);
            let mut first = [0u8; 1000];
            std::io::Read::read_exact(&mut client.reader, &mut first).unwrap();
            drop(client);
        }
        // The node still serves every byte.
        assert!(read_block(node.addr, 5, 0, data.len() as u64).unwrap() == data, "{mode:?}");
    }
}

#[test]
fn a_pipeline_forwarding_with_send_zc_stores_every_replica() {
    if !uring_available() {
        return;
    }
    let nodes: Vec<UringNode> = (0..3)
        .map(|_| {
            UringNode::start(|options| {
                options.mirror_send_zc = true;
                options.rings = 1;
            })
        })
        .collect();
    let addrs: Vec<_> = nodes.iter().map(|node| node.addr).collect();
    let data = pattern(3 * MIB + 4321, 21);
    write_block(&addrs, 21, &data, 64_512);
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !node.ctx.store.get(21).is_some_and(|replica| replica.state == ReplicaState::Finalized) {
            assert!(Instant::now() < deadline, "replica never finalized at {}", node.addr);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(read_block(node.addr, 21, 0, data.len() as u64).unwrap() == data, "bytes at {}", node.addr);
    }
}

/// CPU seconds (user + system) of this process so far, io-wq workers included.
#[test]
fn idle_connections_beyond_the_buffer_budget_do_not_starve_readers() {
    if !uring_available() {
        return;
    }
    // Control slots for 4 connections; 10x as many sit idle (as in a client's peer
    // cache). An idle connection holds no slot, so reads still go through.
    let control_slots = 4 * 8;
    let node = UringNode::start(|options| {
        options.rings = 1;
        options.ring.control_slot_count = control_slots;
    });
    let data = pattern(300_000, 9);
    write_block(&[node.addr], 9, &data, 64_512);
    let idle: Vec<TcpStream> =
        (0..control_slots * 10).map(|_| TcpStream::connect(node.addr).unwrap()).collect();
    // One connection that sends half an op request and stops holds its slot; the rest
    // must still be served.
    let mut partial = TcpStream::connect(node.addr).unwrap();
    partial.write_all(&[0, 28]).unwrap();
    for round in 0..3 {
        let readers: Vec<_> = (0..8)
            .map(|i| {
                let addr = node.addr;
                std::thread::spawn(move || read_block(addr, 9, 1000 * i, 100_000).unwrap())
            })
            .collect();
        for (i, reader) in readers.into_iter().enumerate() {
            let got = reader.join().unwrap();
            assert!(got == data[1000 * i..1000 * i + 100_000], "round {round} reader {i}");
        }
    }
    drop((idle, partial));
}

fn process_cpu_seconds() -> f64 {
    cpu_seconds_of("/proc/self/stat")
}

/// CPU seconds of the calling thread.
fn thread_cpu_seconds() -> f64 {
    cpu_seconds_of("/proc/thread-self/stat")
}

fn cpu_seconds_of(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux.
}

/// Reads a whole block, draining packets without checking CRCs (the client's cost is
/// the same for every engine); returns data bytes received.
fn drain_block(client: &mut DtpClient, block_id: u64, len: u64) -> u64 {
    client.send_op(OpRequest::ReadBlock(read_op(block_id, 1001, 0, len)));
    let response = client.response();
    assert_eq!(response.status, Status::Success as i32);
    let mut buf = Vec::with_capacity(128 * 1024);
    let mut received = 0u64;
    loop {
        let layout = read_packet(&mut client.reader, &mut buf, Some(DataChecksum::CRC32C_512)).unwrap();
        if layout.header.last_packet_in_block {
            break;
        }
        received += layout.data_len as u64;
    }
    let status = ClientReadStatusProto { status: Status::ChecksumOk as i32 };
    write_delimited(&mut client.stream, &status, "status").unwrap();
    client.stream.flush().unwrap();
    received
}

/// One measured pass: (GB/s, datanode CPU s/GiB, client CPU s/GiB).
fn measure_reads(client: &mut DtpClient, block_id: u64, block: usize, reads: usize) -> (f64, f64, f64) {
    let (process_before, client_before, started) =
        (process_cpu_seconds(), thread_cpu_seconds(), Instant::now());
    let mut total = 0;
    for _ in 0..reads {
        total += drain_block(client, block_id, block as u64);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let client_cpu = thread_cpu_seconds() - client_before;
    let datanode_cpu = process_cpu_seconds() - process_before - client_cpu;
    assert_eq!(total, (block * reads) as u64);
    let gib = total as f64 / (1u64 << 30) as f64;
    (total as f64 / elapsed / 1e9, datanode_cpu / gib, client_cpu / gib)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The experiment behind `ReadMode::DEFAULT`: rounds of 1 GiB of hot (page-cached) reads
/// over loopback per engine and mode, interleaved so machine load hits all alike;
/// reports GB/s and datanode CPU seconds per GiB (io-wq workers included), medians last.
#[test]
#[ignore = "a measurement: cargo test --release -p ringfs-datanode --test uring_engine -- --ignored --nocapture"]
fn read_mode_experiment() {
    if !uring_available() {
        return;
    }
    const BLOCK: usize = 256 * MIB;
    const READS: usize = 4;
    const ROUNDS: usize = 5;
    let data = pattern(BLOCK, 99);
    let threads_node = TestNode::start(EngineKind::Threads);
    let splice_node = UringNode::start(|options| {
        options.read_mode = ReadMode::Splice;
        options.rings = 1;
    });
    let zero_copy_node = UringNode::start(|options| {
        options.read_mode = ReadMode::ReadFixedSendZc;
        options.rings = 1;
    });
    let copy_node = UringNode::start(|options| {
        options.read_mode = ReadMode::ReadFixedSend;
        options.rings = 1;
    });
    let targets = [
        ("threads (sendfile)", threads_node.addr),
        ("uring splice", splice_node.addr),
        ("uring READ_FIXED+SEND_ZC", zero_copy_node.addr),
        ("uring READ_FIXED+SEND", copy_node.addr),
    ];
    for (_, addr) in &targets {
        write_block(&[*addr], 99, &data, 64_512);
        drain_block(&mut DtpClient::connect(*addr), 99, BLOCK as u64); // Warm the page cache and the path.
    }
    let mut samples = vec![(Vec::new(), Vec::new(), Vec::new()); targets.len()];
    for round in 0..ROUNDS {
        for (index, (name, addr)) in targets.iter().enumerate() {
            // A fresh connection: an idle one is closed after the 4 s keepalive.
            let mut client = DtpClient::connect(*addr);
            let (rate, datanode_cpu, client_cpu) = measure_reads(&mut client, 99, BLOCK, READS);
            println!("round {round} {name:26} {rate:.2} GB/s  datanode CPU {datanode_cpu:.2} s/GiB  client CPU {client_cpu:.2} s/GiB");
            samples[index].0.push(rate);
            samples[index].1.push(datanode_cpu);
            samples[index].2.push(client_cpu);
        }
    }
    println!("loadavg during the run: {}", std::fs::read_to_string("/proc/loadavg").unwrap().trim());
    for (index, (name, _)) in targets.iter().enumerate() {
        let (rates, datanode, client) = &mut samples[index];
        println!(
            "MEDIAN {name:26} {:.2} GB/s  datanode CPU {:.2} s/GiB  client CPU {:.2} s/GiB  (sum {:.2})",
            median(rates),
            median(datanode),
            median(client),
            median(datanode) + median(client)
        );
    }
}
