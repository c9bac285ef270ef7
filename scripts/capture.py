#!/usr/bin/env python3
"""Capture golden wire bytes from the real HDFS clients.

A scripted fake NameNode (Hadoop IPC v9) and fake DataNode (DataTransferProtocol v28)
run on 127.0.0.1; each real client (the Java FsShell, the hdfs-native Python wheel,
snakebite) runs a few commands against them, and every byte each side sends is saved
under common/tests/data/<client>/<scenario>/:

  manifest.txt          one line per logical unit, in wire order:
                        <connection> <c2s|s2c> <kind> <file> [<method>]
  raw/<conn>.<dir>.bin  the whole byte stream of one connection in one direction
  *.bin                 one file per logical unit (preamble, context frame, each request
                        frame NNN-<method>.bin with its 4-byte length, the fake's response
                        frames, op requests, packets, acks, ...)

common/tests/golden.rs decodes every unit with ringfs-common and re-encodes it byte for
byte; common/tests/data/README.md records what the captures taught us.

The fake servers answer with messages built from OUR .proto files (common/proto), which
are compiled at run time with grpcio-tools' protoc into a temp dir. The tool runs in its
own venv (~/.cache/ringfs-deps/capture-venv; snakebite's venv pins an old protobuf) and
creates it on first use.

Usage:
  scripts/capture.py --all                      every client, every scenario
  scripts/capture.py --client java [--scenario write]
  scripts/capture.py --list
  scripts/capture.py --dump common/tests/data/java/write   print the units decoded
Needs the clients from scripts/install-clients.sh (~/.cache/ringfs-deps).
"""

import argparse
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO / "common" / "proto"
DATA_DIR = REPO / "common" / "tests" / "data"
DEPS = Path(os.environ.get("RINGFS_DEPS", Path.home() / ".cache" / "ringfs-deps"))
CAPTURE_VENV = DEPS / "capture-venv"
CLIENT_TIMEOUT_S = 180
# How long a connection handler may take to finish once its client has exited.
HANDLER_EXIT_WAIT_S = 10

# ------------------------------------------------------------------ bootstrap --


def ensure_capture_venv():
    """Re-executes this script inside the capture venv, creating it if needed."""
    if Path(sys.prefix).resolve() == CAPTURE_VENV.resolve():
        return
    python = CAPTURE_VENV / "bin" / "python"
    if not python.exists():
        print(f"capture: creating {CAPTURE_VENV}", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", str(CAPTURE_VENV)])
    probe = subprocess.run([str(python), "-c", "import grpc_tools.protoc, google.protobuf"],
                           capture_output=True)
    if probe.returncode != 0:
        subprocess.check_call([str(python), "-m", "pip", "install", "-q", "grpcio-tools", "protobuf"])
    os.execv(str(python), [str(python), str(Path(__file__).resolve())] + sys.argv[1:])


def load_protos():
    """Compiles common/proto/*.proto to Python in a temp dir and imports the modules."""
    from grpc_tools import protoc  # noqa: PLC0415 (only available inside the venv)

    out = tempfile.mkdtemp(prefix="ringfs-capture-pb-")
    protos = sorted(str(p) for p in PROTO_DIR.glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}", *protos])
    if rc != 0:
        sys.exit(f"capture: protoc failed on {PROTO_DIR} (exit {rc})")
    sys.path.insert(0, out)
    import client_namenode_pb2  # noqa: PLC0415
    import datatransfer_pb2  # noqa: PLC0415
    import hdfs_pb2  # noqa: PLC0415
    import rpc_pb2  # noqa: PLC0415

    global RPC, HDFS, CNN, DTP
    RPC, HDFS, CNN, DTP = rpc_pb2, hdfs_pb2, client_namenode_pb2, datatransfer_pb2


RPC = HDFS = CNN = DTP = None

# ------------------------------------------------------------------- content --

BYTES_PER_CHECKSUM = 512
# 3 full chunks and a partial one: packets, checksums and the partial last chunk all
# show up while the data stays tiny. Same formula in common/tests/golden.rs.
CONTENT_LEN = 3 * BYTES_PER_CHECKSUM + 100
ALPHABET = b"0123456789abcdefghijklmnopqrstuvwxyz\n"


def golden_content():
    return bytes(ALPHABET[i % len(ALPHABET)] for i in range(CONTENT_LEN))


# Two chunks per write packet: (1065 - 33) // 516 = 2, so the content goes out as a
# full packet, a packet with the partial chunk, and the empty last packet. Java takes
# it from dfs.client-write-packet-size, hdfs-native from the server defaults.
WRITE_PACKET_SIZE = 33 + 2 * (BYTES_PER_CHECKSUM + 4)
# The fake DataNode serves reads two chunks per packet for the same reason.
READ_PACKET_DATA = 2 * BYTES_PER_CHECKSUM
# How long the fake DataNode waits for an early ClientReadStatus (see read_block).
EARLY_STATUS_WAIT_S = 1.0

BLOCK_SIZE = 134217728
POOL_ID = "BP-1-127.0.0.1-1700000000000"
FIRST_BLOCK_ID = 1073741825
FIRST_GENSTAMP = 1001
FIXED_TIME_MS = 1700000000000
STORAGE_ID = "DS-golden-0000"
DATANODE_UUID = "golden-datanode-0000"
USER = "ringfs"
GROUP = "supergroup"


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def chunk_crcs(data):
    return b"".join(struct.pack(">I", crc32c(data[i:i + BYTES_PER_CHECKSUM]))
                    for i in range(0, len(data), BYTES_PER_CHECKSUM))


# -------------------------------------------------------------------- wire ----


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def delimited(msg):
    body = msg.SerializeToString()
    return varint(len(body)) + body


def take_delimited(buf, pos):
    """Returns (message bytes, new position) of the varint-delimited message at pos."""
    size = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        size |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return buf[pos:pos + size], pos + size


class Closed(Exception):
    pass


class Scenario:
    """The record of one client command: units in wire order, per-connection streams."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.units = []  # (conn, direction, kind, file, method, bytes)
        self.names = set()
        self.streams = {}  # (conn, direction) -> bytearray
        self.conn_counts = {}
        self.call_index = 0
        self.unknown_methods = []
        self.notes = []
        self.errors = []

    def new_conn(self, role):
        with self.lock:
            n = self.conn_counts.get(role, 0) + 1
            self.conn_counts[role] = n
            return f"{role}-{n}"

    def next_call(self):
        with self.lock:
            i = self.call_index
            self.call_index += 1
            return i

    def raw(self, conn, direction, data):
        with self.lock:
            self.streams.setdefault((conn, direction), bytearray()).extend(data)

    def unit(self, conn, direction, kind, name, data, method=""):
        with self.lock:
            stem, ext = name.rsplit(".", 1)
            candidate, n = name, 1
            while candidate in self.names:
                n += 1
                candidate = f"{stem}-{n}.{ext}"
            self.names.add(candidate)
            self.units.append((conn, direction, kind, candidate, method, bytes(data)))

    def write(self, out_dir, header_lines):
        if out_dir.exists():
            shutil.rmtree(out_dir)
        (out_dir / "raw").mkdir(parents=True)
        lines = [f"# {line}" for line in header_lines]
        for conn, direction, kind, name, method, data in self.units:
            (out_dir / name).write_bytes(data)
            lines.append(" ".join(x for x in (conn, direction, kind, name, method) if x))
        for (conn, direction), data in sorted(self.streams.items()):
            (out_dir / "raw" / f"{conn}.{direction}.bin").write_bytes(bytes(data))
        (out_dir / "manifest.txt").write_text("\n".join(lines) + "\n")


class Conn:
    """A socket that records what it reads and writes into the scenario."""

    def __init__(self, sock, scenario, role):
        self.sock = sock
        self.scenario = scenario
        self.name = scenario.new_conn(role)

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                if buf:
                    self.scenario.raw(self.name, "c2s", buf)
                    raise Closed(f"{self.name}: EOF after {len(buf)} of {n} bytes")
                raise Closed(f"{self.name}: EOF")
            buf.extend(chunk)
        self.scenario.raw(self.name, "c2s", buf)
        return bytes(buf)

    def recv_varint_delimited(self):
        """Reads a varint-delimited message; returns (whole bytes incl. prefix, body)."""
        prefix = bytearray()
        size = shift = 0
        while True:
            b = self.recv_exact(1)[0]
            prefix.append(b)
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        body = self.recv_exact(size) if size else b""
        return bytes(prefix) + body, body

    def send(self, data):
        self.scenario.raw(self.name, "s2c", data)
        self.sock.sendall(data)

    def unit(self, direction, kind, name, data, method=""):
        self.scenario.unit(self.name, direction, kind, name, data, method)


def serve(listener, handler, scenario, role, stop, threads):
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            sock, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            return
        sock.settimeout(60)
        conn = Conn(sock, scenario, role)

        def run(conn=conn, sock=sock):
            try:
                handler(conn)
            except Closed:
                pass
            except Exception:  # noqa: BLE001 - a capture bug must be reported, not hidden
                scenario.errors.append(f"{conn.name}: {traceback.format_exc()}")
            finally:
                sock.close()

        thread = threading.Thread(target=run, daemon=True)
        threads.append(thread)
        thread.start()


# ---------------------------------------------------------------- namespace ---


class Inode:
    def __init__(self, is_dir, perm, file_id):
        self.is_dir = is_dir
        self.perm = perm
        self.file_id = file_id
        self.blocks = []  # [block_id, genstamp, num_bytes]
        self.complete = True

    @property
    def length(self):
        return sum(b[2] for b in self.blocks)


class Cluster:
    """The state both fakes share: a namespace and the DataNode's blocks."""

    def __init__(self, scenario):
        self.scenario = scenario
        self.lock = threading.Lock()
        self.inodes = {"/": Inode(True, 0o755, 16385)}
        self.next_file_id = 16386
        self.next_block_id = FIRST_BLOCK_ID
        self.block_data = {}  # block id -> bytes
        self.dn_port = 0

    # -- seeding
    def add_dir(self, path):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/" + "/".join(parts[:i])
            if p not in self.inodes:
                self.inodes[p] = Inode(True, 0o755, self.alloc_file_id())

    def add_file(self, path, data):
        if parent(path) != "/":
            self.add_dir(parent(path))
        inode = Inode(False, 0o644, self.alloc_file_id())
        block_id = self.alloc_block_id()
        inode.blocks.append([block_id, FIRST_GENSTAMP, len(data)])
        self.block_data[block_id] = data
        self.inodes[path] = inode

    def alloc_file_id(self):
        self.next_file_id += 1
        return self.next_file_id - 1

    def alloc_block_id(self):
        self.next_block_id += 1
        return self.next_block_id - 1

    # -- messages
    def children(self, path):
        prefix = path.rstrip("/") + "/"
        return sorted(p[len(prefix):] for p in self.inodes
                      if p.startswith(prefix) and p != path and "/" not in p[len(prefix):])

    def status(self, path, name=b""):
        inode = self.inodes[path]
        st = HDFS.HdfsFileStatusProto(
            fileType=HDFS.HdfsFileStatusProto.IS_DIR if inode.is_dir else HDFS.HdfsFileStatusProto.IS_FILE,
            path=name,
            length=0 if inode.is_dir else inode.length,
            permission=HDFS.FsPermissionProto(perm=inode.perm),
            owner=USER,
            group=GROUP,
            modification_time=FIXED_TIME_MS,
            access_time=0 if inode.is_dir else FIXED_TIME_MS,
            block_replication=0 if inode.is_dir else 1,
            blocksize=0 if inode.is_dir else BLOCK_SIZE,
            fileId=inode.file_id,
            childrenNum=len(self.children(path)) if inode.is_dir else 0,
            storagePolicy=0,
            flags=0,
        )
        return st

    def datanode_info(self):
        return HDFS.DatanodeInfoProto(
            id=HDFS.DatanodeIDProto(ipAddr="127.0.0.1", hostName="localhost", datanodeUuid=DATANODE_UUID,
                                    xferPort=self.dn_port, infoPort=9864, ipcPort=9867, infoSecurePort=0),
            capacity=1 << 40, dfsUsed=0, remaining=1 << 40, blockPoolUsed=0, lastUpdate=FIXED_TIME_MS,
            xceiverCount=1, location="/default-rack", nonDfsUsed=0, adminState=HDFS.DatanodeInfoProto.NORMAL,
            lastUpdateMonotonic=0)

    def located_block(self, block, offset):
        block_id, genstamp, num_bytes = block
        return HDFS.LocatedBlockProto(
            b=HDFS.ExtendedBlockProto(poolId=POOL_ID, blockId=block_id, generationStamp=genstamp,
                                      numBytes=num_bytes),
            offset=offset,
            locs=[self.datanode_info()],
            corrupt=False,
            # Block tokens are off: all four fields present and empty.
            blockToken=RPC.TokenProto(identifier=b"", password=b"", kind="", service=""),
            isCached=[False],
            storageTypes=[HDFS.DISK],
            storageIDs=[STORAGE_ID],
        )

    def located_blocks(self, path):
        inode = self.inodes[path]
        blocks, offset = [], 0
        for b in inode.blocks:
            blocks.append(self.located_block(b, offset))
            offset += b[2]
        lb = HDFS.LocatedBlocksProto(fileLength=inode.length, blocks=blocks, underConstruction=not inode.complete,
                                     isLastBlockComplete=inode.complete)
        if blocks:
            lb.lastBlock.CopyFrom(blocks[-1])
        return lb

    # -- ClientProtocol
    def call(self, method, payload):
        """Returns (response message or None, error (class, message, detail) or None)."""
        with self.lock:
            handler = getattr(self, "rpc_" + method, None)
            if handler is None:
                self.scenario.unknown_methods.append(method)
                return None, ("org.apache.hadoop.ipc.RpcNoSuchMethodException",
                              f"Unknown method {method} called on org.apache.hadoop.hdfs.protocol.ClientProtocol "
                              "protocol.", RPC.RpcResponseHeaderProto.ERROR_NO_SUCH_METHOD)
            return handler(payload)

    def rpc_getFileInfo(self, payload):
        req = CNN.GetFileInfoRequestProto.FromString(payload)
        resp = CNN.GetFileInfoResponseProto()
        if req.src in self.inodes:
            resp.fs.CopyFrom(self.status(req.src))
        return resp, None

    def rpc_getListing(self, payload):
        req = CNN.GetListingRequestProto.FromString(payload)
        resp = CNN.GetListingResponseProto()
        if req.src not in self.inodes:
            return resp, None
        if not self.inodes[req.src].is_dir:
            entries = [self.status(req.src)]
        else:
            after = req.startAfter.decode()
            base = req.src.rstrip("/")
            entries = [self.status(f"{base}/{name}", name.encode()) for name in self.children(req.src)
                       if name > after]
        resp.dirList.CopyFrom(HDFS.DirectoryListingProto(partialListing=entries, remainingEntries=0))
        return resp, None

    def rpc_mkdirs(self, payload):
        req = CNN.MkdirsRequestProto.FromString(payload)
        if req.src in self.inodes and not self.inodes[req.src].is_dir:
            return None, ("org.apache.hadoop.fs.FileAlreadyExistsException", f"Path is not a directory: {req.src}",
                          RPC.RpcResponseHeaderProto.ERROR_APPLICATION)
        if not req.createParent and parent(req.src) not in self.inodes:
            return None, ("java.io.FileNotFoundException", f"Parent directory doesn't exist: {parent(req.src)}",
                          RPC.RpcResponseHeaderProto.ERROR_APPLICATION)
        self.add_dir(req.src)
        self.inodes[req.src].perm = req.masked.perm
        return CNN.MkdirsResponseProto(result=True), None

    def rpc_getServerDefaults(self, payload):
        CNN.GetServerDefaultsRequestProto.FromString(payload)
        defaults = HDFS.FsServerDefaultsProto(
            blockSize=BLOCK_SIZE, bytesPerChecksum=BYTES_PER_CHECKSUM, writePacketSize=WRITE_PACKET_SIZE,
            replication=1, fileBufferSize=4096, encryptDataTransfer=False, trashInterval=0,
            checksumType=HDFS.CHECKSUM_CRC32C)
        return CNN.GetServerDefaultsResponseProto(serverDefaults=defaults), None

    def rpc_create(self, payload):
        req = CNN.CreateRequestProto.FromString(payload)
        existing = self.inodes.get(req.src)
        if existing is not None and (existing.is_dir or not req.createFlag & 0x02):
            return None, ("org.apache.hadoop.fs.FileAlreadyExistsException", f"{req.src} already exists",
                          RPC.RpcResponseHeaderProto.ERROR_APPLICATION)
        if parent(req.src) not in self.inodes:
            if not req.createParent:
                return None, ("java.io.FileNotFoundException", f"Parent directory doesn't exist: {parent(req.src)}",
                              RPC.RpcResponseHeaderProto.ERROR_APPLICATION)
            self.add_dir(parent(req.src))
        inode = Inode(False, req.masked.perm, self.alloc_file_id())
        inode.complete = False
        self.inodes[req.src] = inode
        return CNN.CreateResponseProto(fs=self.status(req.src)), None

    def _set_last(self, inode, last):
        if last.blockId and inode.blocks and inode.blocks[-1][0] == last.blockId:
            inode.blocks[-1][2] = last.numBytes

    def rpc_addBlock(self, payload):
        req = CNN.AddBlockRequestProto.FromString(payload)
        inode = self.inodes[req.src]
        if req.HasField("previous"):
            self._set_last(inode, req.previous)
        offset = inode.length
        block = [self.alloc_block_id(), FIRST_GENSTAMP, 0]
        inode.blocks.append(block)
        return CNN.AddBlockResponseProto(block=self.located_block(block, offset)), None

    def rpc_complete(self, payload):
        req = CNN.CompleteRequestProto.FromString(payload)
        inode = self.inodes[req.src]
        if req.HasField("last"):
            self._set_last(inode, req.last)
        inode.complete = True
        return CNN.CompleteResponseProto(result=True), None

    def _move(self, src, dst):
        moved = {p: i for p, i in self.inodes.items() if p == src or p.startswith(src + "/")}
        for p in moved:
            del self.inodes[p]
        for p, inode in moved.items():
            self.inodes[dst + p[len(src):]] = inode

    def rpc_rename(self, payload):
        req = CNN.RenameRequestProto.FromString(payload)
        if req.src not in self.inodes or req.dst in self.inodes or parent(req.dst) not in self.inodes:
            return CNN.RenameResponseProto(result=False), None
        self._move(req.src, req.dst)
        return CNN.RenameResponseProto(result=True), None

    def rpc_rename2(self, payload):
        req = CNN.Rename2RequestProto.FromString(payload)
        if req.src not in self.inodes:
            return None, ("java.io.FileNotFoundException", f"File does not exist: {req.src}",
                          RPC.RpcResponseHeaderProto.ERROR_APPLICATION)
        if req.dst in self.inodes:
            del self.inodes[req.dst]
        self._move(req.src, req.dst)
        return CNN.Rename2ResponseProto(), None

    def rpc_delete(self, payload):
        req = CNN.DeleteRequestProto.FromString(payload)
        doomed = [p for p in self.inodes if p == req.src or p.startswith(req.src.rstrip("/") + "/")]
        for p in doomed:
            del self.inodes[p]
        return CNN.DeleteResponseProto(result=bool(doomed)), None

    def rpc_getBlockLocations(self, payload):
        req = CNN.GetBlockLocationsRequestProto.FromString(payload)
        if req.src not in self.inodes:
            return None, ("java.io.FileNotFoundException", f"File does not exist: {req.src}",
                          RPC.RpcResponseHeaderProto.ERROR_APPLICATION)
        return CNN.GetBlockLocationsResponseProto(locations=self.located_blocks(req.src)), None

    def rpc_renewLease(self, payload):
        CNN.RenewLeaseRequestProto.FromString(payload)
        return CNN.RenewLeaseResponseProto(), None


def parent(path):
    head = path.rstrip("/").rsplit("/", 1)[0]
    return head or "/"


# ------------------------------------------------------------- fake namenode --

SASL_CALL_ID = -33
CONTEXT_CALL_ID = -3
PING_CALL_ID = -4


def response_frame(header, message=None):
    body = delimited(header) + (delimited(message) if message is not None else b"")
    return struct.pack(">I", len(body)) + body


def namenode_handler(cluster):
    def handle(conn):
        preamble = conn.recv_exact(7)
        conn.unit("c2s", "preamble", "preamble.bin", preamble)
        if preamble[:4] != b"hrpc" or preamble[4] != 9:
            raise Closed(f"bad preamble {preamble!r}")
        while True:
            length = conn.recv_exact(4)
            body = conn.recv_exact(struct.unpack(">I", length)[0])
            frame = length + body
            header_bytes, pos = take_delimited(body, 0)
            header = RPC.RpcRequestHeaderProto.FromString(header_bytes)
            if header.callId == CONTEXT_CALL_ID:
                conn.unit("c2s", "context", "context.bin", frame)
                continue
            if header.callId == PING_CALL_ID:
                conn.unit("c2s", "ping", "ping.bin", frame)
                continue
            if header.callId == SASL_CALL_ID:
                sasl = RPC.RpcSaslProto.FromString(take_delimited(body, pos)[0])
                conn.unit("c2s", "sasl", "sasl-request.bin", frame)
                if sasl.state == RPC.RpcSaslProto.NEGOTIATE:
                    # A simple-auth server answers NEGOTIATE with SUCCESS: the client
                    # falls back to SIMPLE and sends its connection context next.
                    reply = response_frame(
                        RPC.RpcResponseHeaderProto(callId=SASL_CALL_ID & 0xFFFFFFFF,
                                                   status=RPC.RpcResponseHeaderProto.SUCCESS,
                                                   serverIpcVersionNum=9, retryCount=-1),
                        RPC.RpcSaslProto(state=RPC.RpcSaslProto.SUCCESS))
                    conn.unit("s2c", "sasl-response", "sasl-response.bin", reply)
                    conn.send(reply)
                continue
            request_header_bytes, pos = take_delimited(body, pos)
            request_header = RPC.RequestHeaderProto.FromString(request_header_bytes)
            payload, _ = take_delimited(body, pos)
            method = request_header.methodName
            index = conn.scenario.next_call()
            conn.unit("c2s", "call", f"{index:03}-{method}.bin", frame, method)
            message, error = cluster.call(method, payload)
            reply_header = RPC.RpcResponseHeaderProto(
                callId=header.callId & 0xFFFFFFFF, serverIpcVersionNum=9, clientId=header.clientId,
                retryCount=header.retryCount if header.HasField("retryCount") else -1)
            if error is None:
                reply_header.status = RPC.RpcResponseHeaderProto.SUCCESS
                reply = response_frame(reply_header, message)
            else:
                reply_header.status = RPC.RpcResponseHeaderProto.ERROR
                reply_header.exceptionClassName, reply_header.errorMsg, reply_header.errorDetail = error
                reply = response_frame(reply_header)
            conn.unit("s2c", "response", f"{index:03}-{method}.response.bin", reply, method)
            conn.send(reply)

    return handle


# ------------------------------------------------------------- fake datanode --

OP_WRITE_BLOCK = 80
OP_READ_BLOCK = 81


def packet_bytes(offset, seqno, last, data):
    header = DTP.PacketHeaderProto(offsetInBlock=offset, seqno=seqno, lastPacketInBlock=last, dataLen=len(data))
    header_bytes = header.SerializeToString()
    checksums = chunk_crcs(data)
    return (struct.pack(">IH", 4 + len(checksums) + len(data), len(header_bytes)) + header_bytes
            + checksums + data)


def datanode_handler(cluster):
    def handle(conn):
        while True:
            head = conn.recv_exact(3)
            version, op = struct.unpack(">HB", head)
            if version != 28:
                raise Closed(f"data transfer version {version}")
            whole, body = conn.recv_varint_delimited()
            if op == OP_WRITE_BLOCK:
                write_block(conn, cluster, head + whole, DTP.OpWriteBlockProto.FromString(body))
            elif op == OP_READ_BLOCK:
                read_block(conn, cluster, head + whole, DTP.OpReadBlockProto.FromString(body))
            else:
                conn.unit("c2s", "op", f"op-{op}.bin", head + whole)
                reply = delimited(DTP.BlockOpResponseProto(status=DTP.ERROR_UNSUPPORTED,
                                                           message=f"op {op} is not served by the capture"))
                conn.unit("s2c", "op-response", f"op-{op}.response.bin", reply)
                conn.send(reply)

    return handle


def write_block(conn, cluster, op_bytes, op):
    conn.unit("c2s", "write-op", "write_block_op.bin", op_bytes)
    reply = delimited(DTP.BlockOpResponseProto(status=DTP.SUCCESS, firstBadLink=""))
    conn.unit("s2c", "op-response", "write_block_response.bin", reply)
    conn.send(reply)
    block_id = op.header.baseHeader.block.blockId
    data = bytearray()
    while True:
        lengths = conn.recv_exact(6)
        payload_len, header_len = struct.unpack(">IH", lengths)
        header_bytes = conn.recv_exact(header_len)
        rest = conn.recv_exact(payload_len - 4)
        header = DTP.PacketHeaderProto.FromString(header_bytes)
        name = "heartbeat.bin" if header.seqno == -1 else f"packet-{header.seqno:03}.bin"
        conn.unit("c2s", "packet", name, lengths + header_bytes + rest)
        if header.dataLen:
            data.extend(rest[len(rest) - header.dataLen:])
        ack = delimited(DTP.PipelineAckProto(seqno=header.seqno, reply=[DTP.SUCCESS], downstreamAckTimeNanos=0,
                                             flag=[0]))
        conn.unit("s2c", "ack", f"ack-{header.seqno:03}.bin" if header.seqno >= 0 else "ack-heartbeat.bin", ack)
        conn.send(ack)
        if header.lastPacketInBlock:
            break
    with cluster.lock:
        cluster.block_data[block_id] = bytes(data)


def read_block(conn, cluster, op_bytes, op):
    conn.unit("c2s", "read-op", "read_block_op.bin", op_bytes)
    with cluster.lock:
        data = cluster.block_data.get(op.header.baseHeader.block.blockId)
    if data is None or op.offset + op.len > len(data):
        reply = delimited(DTP.BlockOpResponseProto(status=DTP.ERROR, message="no such replica"))
        conn.unit("s2c", "op-response", "read_block_response.bin", reply)
        conn.send(reply)
        return
    chunk_offset = op.offset - op.offset % BYTES_PER_CHECKSUM
    end = op.offset + op.len
    end = min(len(data), -(-end // BYTES_PER_CHECKSUM) * BYTES_PER_CHECKSUM)
    reply = delimited(DTP.BlockOpResponseProto(
        status=DTP.SUCCESS,
        readOpChecksumInfo=DTP.ReadOpChecksumInfoProto(
            checksum=DTP.ChecksumProto(type=HDFS.CHECKSUM_CRC32C, bytesPerChecksum=BYTES_PER_CHECKSUM),
            chunkOffset=chunk_offset)))
    conn.unit("s2c", "op-response", "read_block_response.bin", reply)
    conn.send(reply)
    seqno, pos = 0, chunk_offset
    while pos < end:
        chunk = data[pos:min(end, pos + READ_PACKET_DATA)]
        packet = packet_bytes(pos, seqno, False, chunk)
        conn.unit("s2c", "read-packet", f"read-packet-{seqno:03}.bin", packet)
        conn.send(packet)
        pos += len(chunk)
        seqno += 1
    # snakebite sends its ClientReadStatus as soon as it has the bytes it asked for and
    # closes without reading the end-of-read packet; were that packet sent first, the
    # close would reset the connection and the kernel would drop the status unread.
    # Java and hdfs-native stay silent until they see the empty last packet.
    if select.select([conn.sock], [], [], EARLY_STATUS_WAIT_S)[0]:
        whole, _ = conn.recv_varint_delimited()
        conn.unit("c2s", "read-status", "read_status.bin", whole)
        conn.scenario.notes.append("the client sent ClientReadStatus before the end-of-read packet")
        return
    packet = packet_bytes(end, seqno, True, b"")
    conn.unit("s2c", "read-packet", f"read-packet-{seqno:03}.bin", packet)
    conn.send(packet)
    whole, _ = conn.recv_varint_delimited()
    conn.unit("c2s", "read-status", "read_status.bin", whole)


# -------------------------------------------------------------------- dump ----


def message_class(method, suffix):
    """ClientProtocol message class of `method` ("getFileInfo" -> GetFileInfo<suffix>)."""
    special = {("getFsStats", "RequestProto"): "GetFsStatusRequestProto"}
    name = special.get((method, suffix), method[0].upper() + method[1:] + suffix)
    return getattr(CNN, name, None)


def show(label, message):
    text = str(message).strip().replace("\n", "\n    ")
    print(f"  {label} {type(message).__name__}:" + (f"\n    {text}" if text else " (empty)"))


def dump(scenario_dir):
    """Prints every captured unit of a scenario decoded with our protos."""
    ops = {OP_WRITE_BLOCK: DTP.OpWriteBlockProto, OP_READ_BLOCK: DTP.OpReadBlockProto}
    for line in (scenario_dir / "manifest.txt").read_text().splitlines():
        if line.startswith("#"):
            print(line)
            continue
        conn, direction, kind, name, *method = line.split()
        data = (scenario_dir / name).read_bytes()
        print(f"{conn} {direction} {name} ({len(data)} bytes)")
        if kind == "preamble":
            print(f"  {data.hex(' ')}")
        elif kind in ("context", "call", "sasl", "ping"):
            body = data[4:]
            header, pos = take_delimited(body, 0)
            show("header", RPC.RpcRequestHeaderProto.FromString(header))
            if kind == "context":
                show("context", RPC.IpcConnectionContextProto.FromString(take_delimited(body, pos)[0]))
            elif kind == "sasl":
                show("sasl", RPC.RpcSaslProto.FromString(take_delimited(body, pos)[0]))
            elif kind == "call":
                request_header, pos = take_delimited(body, pos)
                show("request header", RPC.RequestHeaderProto.FromString(request_header))
                cls = message_class(method[0], "RequestProto")
                payload = take_delimited(body, pos)[0]
                if cls is None:
                    print(f"  request {payload.hex()}")
                else:
                    show("request", cls.FromString(payload))
        elif kind in ("response", "sasl-response"):
            body = data[4:]
            header_bytes, pos = take_delimited(body, 0)
            header = RPC.RpcResponseHeaderProto.FromString(header_bytes)
            show("header", header)
            if header.status == RPC.RpcResponseHeaderProto.SUCCESS:
                cls = RPC.RpcSaslProto if kind == "sasl-response" else message_class(method[0], "ResponseProto")
                show("response", cls.FromString(take_delimited(body, pos)[0]))
        elif kind in ("write-op", "read-op", "op"):
            cls = ops.get(data[2])
            message = take_delimited(data, 3)[0]
            print(f"  version {struct.unpack('>H', data[:2])[0]} op {data[2]}")
            if cls is None:
                print(f"  {message.hex()}")
            else:
                show("op", cls.FromString(message))
        elif kind in ("packet", "read-packet"):
            payload_len, header_len = struct.unpack(">IH", data[:6])
            show(f"PLEN {payload_len} HLEN {header_len}", DTP.PacketHeaderProto.FromString(data[6:6 + header_len]))
        elif kind == "op-response":
            show("response", DTP.BlockOpResponseProto.FromString(take_delimited(data, 0)[0]))
        elif kind == "ack":
            show("ack", DTP.PipelineAckProto.FromString(take_delimited(data, 0)[0]))
        elif kind == "read-status":
            show("status", DTP.ClientReadStatusProto.FromString(take_delimited(data, 0)[0]))


# ----------------------------------------------------------------- clients ----


class Run:
    """One scenario: fresh fakes seeded with `seed`, one client command."""

    def __init__(self, name, seed):
        self.scenario = Scenario(name)
        self.cluster = Cluster(self.scenario)
        for path, data in seed:
            if data is None:
                self.cluster.add_dir(path)
            else:
                self.cluster.add_file(path, data)
        self.stop = threading.Event()
        self.listeners = []
        self.servers = []
        self.handlers = []

    def __enter__(self):
        nn = socket.create_server(("127.0.0.1", 0))
        dn = socket.create_server(("127.0.0.1", 0))
        self.listeners = [nn, dn]
        self.nn_port = nn.getsockname()[1]
        self.cluster.dn_port = dn.getsockname()[1]
        for listener, handler, role in ((nn, namenode_handler(self.cluster), "nn"),
                                        (dn, datanode_handler(self.cluster), "dn")):
            server = threading.Thread(target=serve, daemon=True,
                                      args=(listener, handler, self.scenario, role, self.stop, self.handlers))
            self.servers.append(server)
            server.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for server in self.servers:
            server.join()
        for listener in self.listeners:
            listener.close()
        # The client has exited, so every connection is at EOF: let each handler record
        # its last units before the scenario is written.
        for handler in self.handlers:
            handler.join(HANDLER_EXIT_WAIT_S)
            if handler.is_alive():
                self.scenario.errors.append("a connection handler did not finish")


def env_with(**extra):
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_client(argv, env):
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=CLIENT_TIMEOUT_S)
    return proc.returncode, proc.stdout, proc.stderr


HDFS_SITE = f"""<?xml version="1.0"?>
<configuration>
  <property><name>dfs.client.failover.max.attempts</name><value>0</value></property>
  <property><name>dfs.client.retry.max.attempts</name><value>0</value></property>
  <property><name>ipc.client.connect.max.retries</name><value>0</value></property>
  <property><name>ipc.client.connect.max.retries.on.timeouts</name><value>0</value></property>
  <property><name>dfs.client-write-packet-size</name><value>{WRITE_PACKET_SIZE}</value></property>
</configuration>
"""


class JavaClient:
    name = "java"
    version = "Apache Hadoop FsShell 3.5.0 (hadoop-client-api from pyspark)"

    def __init__(self, work):
        self.conf = work / "java-conf"
        self.conf.mkdir(exist_ok=True)
        (self.conf / "hdfs-site.xml").write_text(HDFS_SITE)
        self.local = work / "localfile"
        self.local.write_bytes(golden_content())

    def scenarios(self):
        return {
            "mkdir": Spec("hadoop fs -mkdir -p /a/b", [], ["-mkdir", "-p", "/a/b"]),
            "ls": Spec("hadoop fs -ls /", LS_SEED, ["-ls", "/"]),
            "write": Spec("hadoop fs -put localfile /f", [], ["-put", str(self.local), "/f"]),
            "read": Spec("hadoop fs -cat /f", READ_SEED, ["-cat", "/f"], stdout=golden_content()),
            "rm": Spec("hadoop fs -rm /f", READ_SEED, ["-rm", "/f"]),
            # The fake does not serve getFsStats: Java must take the error frame and
            # report the remote exception.
            "unknown-method": Spec("hadoop fs -df / (getFsStats is not served)", [], ["-df", "/"], rc=1,
                                   stderr="df: Unknown method getFsStats called on"),
        }

    def run(self, run, args):
        env = env_with(HADOOP_CONF_DIR=self.conf, HADOOP_USER_NAME=USER)
        return run_client(["hadoop", "fs", "-fs", f"hdfs://127.0.0.1:{run.nn_port}", *args], env)


NATIVE_SCRIPT = r"""
import sys
from hdfs_native import Client
port, action = int(sys.argv[1]), sys.argv[2]
config = {"dfs.client.failover.max.attempts": "0", "dfs.client.retry.max.attempts": "0"}
if action == "sasl-ls":
    # Any authentication but "simple" makes hdfs-native send auth byte 0xDF and
    # NEGOTIATE; a SUCCESS answer lets it carry on with SIMPLE.
    config["hadoop.security.authentication"] = "kerberos"
    action = "ls"
client = Client(f"hdfs://127.0.0.1:{port}", config=config)
data = bytes(b"0123456789abcdefghijklmnopqrstuvwxyz\n"[i % 37] for i in range(3 * 512 + 100))
if action == "mkdir":
    client.mkdirs("/a/b", create_parent=True)
elif action == "ls":
    for status in client.list_status("/"):
        print(status.path, status.length, status.isdir)
elif action == "write":
    with client.create("/f") as writer:
        writer.write(data)
elif action == "read":
    with client.read("/f") as reader:
        got = reader.read()
    assert got == data, f"read {len(got)} bytes, not the golden content"
    sys.stdout.write(got.decode())
"""


class NativeClient:
    name = "hdfs-native"
    version = "hdfs-native 0.14.7 (Python wheel)"

    def __init__(self, work):
        self.script = work / "native_client.py"
        self.script.write_text(NATIVE_SCRIPT)

    def scenarios(self):
        return {
            "mkdir": Spec("Client.mkdirs('/a/b', create_parent=True)", [], ["mkdir"]),
            "ls": Spec("Client.list_status('/')", LS_SEED, ["ls"]),
            "write": Spec("Client.create('/f').write(content); close()", [], ["write"]),
            "read": Spec("Client.read('/f').read()", READ_SEED, ["read"], stdout=golden_content()),
            "sasl": Spec("Client.list_status('/') with hadoop.security.authentication=kerberos", LS_SEED,
                         ["sasl-ls"]),
        }

    def run(self, run, args):
        python = DEPS / "venv" / "bin" / "python"
        env = env_with(HADOOP_USER_NAME=USER)
        return run_client([str(python), str(self.script), str(run.nn_port), *args], env)


class SnakebiteClient:
    name = "snakebite"
    version = "snakebite-py3 3.0.6 (CLI)"

    def __init__(self, work):
        self.home = work / "snakebite-home"
        self.home.mkdir(exist_ok=True)

    def scenarios(self):
        return {
            "mkdir": Spec("snakebite mkdirp /a/b", [], ["mkdirp", "/a/b"]),
            "ls": Spec("snakebite ls /", LS_SEED, ["ls", "/"]),
            # snakebite cannot write data; touchz creates an empty file.
            "touchz": Spec("snakebite touchz /t", [], ["touchz", "/t"]),
            "read": Spec("snakebite cat /f", READ_SEED, ["cat", "/f"], stdout=golden_content()),
        }

    def run(self, run, args):
        # The effective user comes from ~/.snakebiterc ("user"), which snakebite reads
        # only when -n/-p are not given; otherwise it is the OS login name.
        rc = {"config_version": 2, "use_trash": False, "user": USER,
              "namenodes": [{"host": "127.0.0.1", "port": run.nn_port, "version": 9}]}
        (self.home / ".snakebiterc").write_text(json.dumps(rc))
        env = env_with(HOME=self.home)
        env.pop("HADOOP_HOME", None)
        env.pop("HADOOP_CONF_DIR", None)
        return run_client([str(DEPS / "bin" / "snakebite"), *args], env)


class Spec(NamedTuple):
    """One scenario: what the client runs against fakes seeded with `seed`."""
    command: str
    seed: list
    args: list
    stdout: bytes = None  # must appear in the client's stdout
    rc: int = 0  # expected exit status
    stderr: str = None  # must appear in the client's stderr


LS_SEED = [("/a", None), ("/f", golden_content())]
READ_SEED = [("/f", golden_content())]
CLIENTS = {c.name: c for c in (JavaClient, NativeClient, SnakebiteClient)}


def capture(client_cls, only, out_root, work):
    client = client_cls(work)
    failures = 0
    for name, spec in client.scenarios().items():
        if only and name not in only:
            continue
        with Run(name, spec.seed) as run:
            rc, stdout, stderr = client.run(run, spec.args)
        scenario = run.scenario
        problems = list(scenario.errors)
        if rc != spec.rc:
            problems.append(f"client exited {rc}, expected {spec.rc}: {stderr.decode(errors='replace')[-2000:]}")
        if spec.stdout is not None and spec.stdout not in stdout:
            problems.append(f"stdout is not the golden content ({len(stdout)} bytes)")
        if spec.stderr is not None and spec.stderr not in stderr.decode(errors="replace"):
            problems.append(f"stderr lacks {spec.stderr!r}: {stderr.decode(errors='replace')[-2000:]}")
        out_dir = out_root / client.name / name
        header = [f"client: {client.version}", f"command: {spec.command}"]
        if scenario.unknown_methods:
            header.append("answered RpcNoSuchMethodException: " + " ".join(scenario.unknown_methods))
        header.extend(scenario.notes)
        if rc != 0:
            lines = stderr.decode(errors="replace").strip().splitlines()
            header.append(f"client exit status {rc}, last stderr line: {lines[-1] if lines else ''}")
        scenario.write(out_dir, header)
        size = sum(len(u[5]) for u in scenario.units)
        status = "ok" if not problems else "FAILED"
        print(f"{client.name}/{name}: {status}, {len(scenario.units)} units, {size} bytes"
              + (f", unknown methods {scenario.unknown_methods}" if scenario.unknown_methods else ""))
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        failures += bool(problems)
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="capture every client and scenario")
    parser.add_argument("--client", action="append", choices=sorted(CLIENTS), help="client(s) to run")
    parser.add_argument("--scenario", action="append", help="scenario(s) to run (default: all)")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help=f"output root (default {DATA_DIR})")
    parser.add_argument("--list", action="store_true", help="list clients and scenarios")
    parser.add_argument("--dump", type=Path, metavar="DIR", help="print a captured scenario decoded")
    args = parser.parse_args()
    if not (args.all or args.client or args.list or args.dump):
        parser.error("pass --all, --client NAME, --list or --dump DIR")
    ensure_capture_venv()
    load_protos()
    if args.dump:
        dump(args.dump)
        return 0
    work = Path(tempfile.mkdtemp(prefix="ringfs-capture-"))
    try:
        if args.list:
            for cls in CLIENTS.values():
                for name, spec in cls(work).scenarios().items():
                    print(f"{cls.name}/{name}: {spec.command}")
            return 0
        os.environ["PATH"] = f"{DEPS / 'bin'}:{os.environ['PATH']}"
        failures = 0
        for name in sorted(args.client or CLIENTS):
            failures += capture(CLIENTS[name], set(args.scenario or []), args.out, work)
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
