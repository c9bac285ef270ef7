//! A datanode data path without a namenode, and a minimal DataTransferProtocol client,
//! for engine tests. `TestNode::start(kind)` serves the data port of a store formatted
//! for a fake block pool; the client speaks the wire protocol byte by byte as HDFS
//! clients do, checking every rule they check.

#![allow(dead_code)]

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringfs_common::checksum::DataChecksum;
use ringfs_common::conf::Configuration;
use ringfs_common::dtp::{OpRequest, Packet, PacketHeader};
use ringfs_common::proto::hdfs::op_write_block_proto::BlockConstructionStage as Stage;
use ringfs_common::proto::hdfs::{
    BaseHeaderProto, BlockOpResponseProto, ChecksumProto, ClientOperationHeaderProto, ClientReadStatusProto,
    DatanodeIdProto, DatanodeInfoProto, ExtendedBlockProto, OpReadBlockProto, OpWriteBlockProto,
    PipelineAckProto, Status,
};
use ringfs_datanode::config::DataNodeConfig;
use ringfs_datanode::context::DataNodeContext;
use ringfs_datanode::engine::{self, EngineKind, RunningEngine};
use ringfs_datanode::events::{EventSink, ReplicaEvent};
use ringfs_datanode::net::{read_delimited, read_packet, write_delimited};
use ringfs_datanode::store::{BlockStore, NamespaceIdentity};

pub const POOL: &str = "BP-42-127.0.0.1-1700000000000";

/// The engines this host can run: threads always, io_uring when built in and allowed.
pub fn engines() -> Vec<EngineKind> {
    let mut engines = vec![EngineKind::Threads];
    if engine::uring_unavailable().is_none() {
        engines.push(EngineKind::Uring);
    }
    engines
}

pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub ctx: Arc<DataNodeContext>,
    pub addr: SocketAddr,
    pub events: tokio::sync::mpsc::UnboundedReceiver<ReplicaEvent>,
    engine: Option<RunningEngine>,
}

impl TestNode {
    pub fn start(kind: EngineKind) -> TestNode {
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
        let (sink, events) = EventSink::channel();
        let ctx = Arc::new(DataNodeContext::new(store, config, sink));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _ = ctx.xfer_addr.set(addr.to_string());
        let engine = engine::start(kind, listener, Arc::clone(&ctx)).unwrap();
        TestNode { dir, ctx, addr, events, engine: Some(engine) }
    }

    /// Events sent so far.
    pub fn drain_events(&mut self) -> Vec<ReplicaEvent> {
        let mut events = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
        events
    }

    /// Waits until `check` holds on the store (work finishing after the client's view).
    pub fn wait_for(&self, what: &str, check: impl Fn(&BlockStore) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check(&self.ctx.store) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take() {
            let _ = engine.stop();
        }
    }
}

pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

pub fn datanode_info(addr: SocketAddr) -> DatanodeInfoProto {
    DatanodeInfoProto {
        id: DatanodeIdProto {
            ip_addr: addr.ip().to_string(),
            host_name: "localhost".into(),
            datanode_uuid: format!("dn-{}", addr.port()),
            xfer_port: u32::from(addr.port()),
            info_port: 0,
            ipc_port: 0,
            info_secure_port: None,
        },
        ..Default::default()
    }
}

pub fn block(block_id: u64, gen_stamp: u64, num_bytes: u64) -> ExtendedBlockProto {
    ExtendedBlockProto {
        pool_id: POOL.into(),
        block_id,
        generation_stamp: gen_stamp,
        num_bytes: Some(num_bytes),
    }
}

pub fn header(block: ExtendedBlockProto, client: &str) -> ClientOperationHeaderProto {
    ClientOperationHeaderProto {
        base_header: BaseHeaderProto { block, token: None, trace_info: None },
        client_name: client.into(),
    }
}

/// A WRITE_BLOCK as hdfs-native sends it; `downstream` are the other pipeline nodes.
pub fn write_op(
    block: ExtendedBlockProto,
    stage: Stage,
    downstream: &[SocketAddr],
    client: &str,
) -> OpWriteBlockProto {
    let num_bytes = block.num_bytes.unwrap_or(0);
    let gen_stamp = block.generation_stamp;
    OpWriteBlockProto {
        header: header(block, client),
        targets: downstream.iter().copied().map(datanode_info).collect(),
        stage: stage as i32,
        pipeline_size: downstream.len() as u32 + 1,
        min_bytes_rcvd: num_bytes,
        max_bytes_rcvd: num_bytes,
        latest_generation_stamp: gen_stamp,
        requested_checksum: ChecksumProto { r#type: 2, bytes_per_checksum: 512 },
        ..Default::default()
    }
}

pub struct DtpClient {
    pub stream: TcpStream,
    pub reader: BufReader<TcpStream>,
}

impl DtpClient {
    pub fn connect(addr: SocketAddr) -> DtpClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        DtpClient { stream, reader }
    }

    pub fn send_op(&mut self, op: OpRequest) {
        let mut out = Vec::new();
        op.encode(&mut out);
        self.stream.write_all(&out).unwrap();
    }

    pub fn response(&mut self) -> BlockOpResponseProto {
        read_delimited(&mut self.reader, "response").unwrap()
    }

    pub fn ack(&mut self) -> PipelineAckProto {
        read_delimited(&mut self.reader, "ack").unwrap()
    }

    pub fn send_packet(&mut self, header: PacketHeader, checksums: &[u8], data: &[u8]) {
        let mut out = Vec::new();
        Packet { header, checksums, data }.encode(&mut out);
        self.stream.write_all(&out).unwrap();
    }

    /// Sends `data` at `offset` as one packet with correct CRC32C checksums.
    pub fn send_data(&mut self, offset: u64, seqno: i64, data: &[u8]) {
        let sums = DataChecksum::CRC32C_512.compute_vec(data);
        let header = PacketHeader {
            offset_in_block: offset as i64,
            seqno,
            last_packet_in_block: false,
            data_len: data.len() as i32,
            sync_block: false,
        };
        self.send_packet(header, &sums, data);
    }

    pub fn send_last(&mut self, offset: u64, seqno: i64) {
        let header = PacketHeader {
            offset_in_block: offset as i64,
            seqno,
            last_packet_in_block: true,
            data_len: 0,
            sync_block: false,
        };
        self.send_packet(header, &[], &[]);
    }

    /// Is the connection closed by the server (EOF or reset)?
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(std::io::Read::read(&mut self.reader, &mut byte), Ok(0) | Err(_))
    }
}

/// Writes a whole block through `addrs[0]` (pipeline `addrs`) as a client does:
/// connect-ack, packets of `packet_size` chunk-aligned bytes with every ack checked in
/// order (one status per node), then the empty last packet once all are acked.
pub fn write_block(addrs: &[SocketAddr], block_id: u64, data: &[u8], packet_size: usize) {
    let mut client = DtpClient::connect(addrs[0]);
    let op = write_op(block(block_id, 1001, 0), Stage::PipelineSetupCreate, &addrs[1..], "test-client");
    client.send_op(OpRequest::WriteBlock(op));
    let connect_ack = client.response();
    assert_eq!(connect_ack.status, Status::Success as i32, "connect-ack {connect_ack:?}");
    let mut seqno = 0i64;
    for (i, chunk) in data.chunks(packet_size).enumerate() {
        client.send_data((i * packet_size) as u64, seqno, chunk);
        seqno += 1;
    }
    for expected in 0..seqno {
        let ack = client.ack();
        assert_eq!(ack.seqno, expected);
        assert_eq!(ack.reply, vec![Status::Success as i32; addrs.len()], "ack {ack:?}");
        assert_eq!(ack.flag.len(), addrs.len());
    }
    client.send_last(data.len() as u64, seqno);
    let ack = client.ack();
    assert_eq!(ack.seqno, seqno);
    assert_eq!(ack.reply, vec![Status::Success as i32; addrs.len()]);
}

pub fn read_op(block_id: u64, gen_stamp: u64, offset: u64, len: u64) -> OpReadBlockProto {
    OpReadBlockProto {
        header: header(block(block_id, gen_stamp, 0), "test-client"),
        offset,
        len,
        send_checksums: Some(true),
        caching_strategy: None,
    }
}

/// Reads `[offset, offset + len)` on an open connection, checking what BlockReaderRemote
/// checks (chunk offset, seqnos, checksums, the empty last packet), and sends
/// CHECKSUM_OK. Returns the requested bytes, or the error response.
pub fn read_on(
    client: &mut DtpClient,
    block_id: u64,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, Box<BlockOpResponseProto>> {
    client.send_op(OpRequest::ReadBlock(read_op(block_id, 1001, offset, len)));
    let response = client.response();
    if response.status != Status::Success as i32 {
        return Err(Box::new(response));
    }
    let info = response.read_op_checksum_info.expect("readOpChecksumInfo");
    let bpc = u64::from(info.checksum.bytes_per_checksum);
    let checksum = DataChecksum::new(
        ringfs_common::checksum::ChecksumKind::from_proto(info.checksum.r#type).unwrap(),
        info.checksum.bytes_per_checksum,
    )
    .unwrap();
    assert!(
        info.chunk_offset <= offset && offset - info.chunk_offset < bpc,
        "chunkOffset {}",
        info.chunk_offset
    );
    let mut received = Vec::new();
    let mut buf = Vec::new();
    let mut expected_seqno = 0;
    loop {
        let layout = read_packet(&mut client.reader, &mut buf, Some(checksum)).unwrap();
        assert_eq!(layout.header.seqno, expected_seqno);
        expected_seqno += 1;
        let sums = &buf[layout.prefix_len..layout.prefix_len + layout.checksum_len];
        let data = &buf[layout.prefix_len + layout.checksum_len..layout.total_len()];
        if layout.header.last_packet_in_block {
            assert!(data.is_empty(), "the last packet is empty");
            break;
        }
        assert!(!data.is_empty(), "only the last packet is empty");
        assert_eq!(layout.header.offset_in_block as u64, info.chunk_offset + received.len() as u64);
        checksum.verify(data, sums, layout.header.offset_in_block as u64).expect("packet checksums");
        received.extend_from_slice(data);
    }
    let skip = (offset - info.chunk_offset) as usize;
    assert!(received.len() >= skip + len as usize, "read covers the request");
    write_delimited(
        &mut client.stream,
        &ClientReadStatusProto { status: Status::ChecksumOk as i32 },
        "status",
    )
    .unwrap();
    Ok(received[skip..skip + len as usize].to_vec())
}

pub fn read_block(
    addr: SocketAddr,
    block_id: u64,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, Box<BlockOpResponseProto>> {
    read_on(&mut DtpClient::connect(addr), block_id, offset, len)
}
