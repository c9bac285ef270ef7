//! Datanode resource limits and timeouts, each with the reason for its value. Wire
//! limits (packet sizes, message caps) live in `ringfs_common::limits`.

use std::time::Duration;

/// Most concurrent data-port connections, Java's `dfs.datanode.max.transfer.threads`
/// default: beyond it a thread-per-connection server runs out of memory or fds.
pub const XCEIVERS_MAX: usize = 4096;

/// How long a connection may sit idle between ops before it is closed: Java's
/// `dfs.datanode.socket.reuse.keepalive` (clients cache connections for about 3 s).
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(4);

/// Read timeout for the first op of a connection and for packets and acks within an
/// op: Java's `dfs.client.socket-timeout` (clients send pipeline heartbeats every 30 s).
pub const SOCKET_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Extra read timeout per downstream node when waiting for a mirror's ack, as Java's
/// `READ_TIMEOUT_EXTENSION`: each hop may itself wait on its own mirror.
pub const READ_TIMEOUT_EXTENSION: Duration = Duration::from_secs(5);

/// Write timeout on data-port sockets: Java's `dfs.datanode.socket.write.timeout`.
pub const SOCKET_WRITE_TIMEOUT: Duration = Duration::from_secs(480);

/// How long connecting to a downstream datanode may take.
pub const MIRROR_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a pipeline recovery waits for the replica's previous writer to give up
/// (Java's `dfs.datanode.xceiver.stop.timeout.millis` is 60 s; our writers stop as soon
/// as their socket is shut down).
pub const WRITER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Packets received but not yet acknowledged per write pipeline: Java's clients keep at
/// most 80 in flight, so this bounds memory without ever stalling a well-behaved client.
pub const UNACKED_PACKETS_MAX: usize = 128;

/// Threads listing volume directories at startup: listing is bound by metadata I/O and
/// by syscalls, so a few more threads than cores keep disks busy.
pub const SCAN_THREADS_MAX: usize = 16;

/// Deepest `subdir` nesting walked in `finalized/` (HDFS uses 2; older layouts nested
/// deeper, never beyond this).
pub const SCAN_DIR_DEPTH_MAX: usize = 6;

/// Shards of the replica map: spreads the lock of a map of millions of replicas so that
/// many xceivers rarely meet on one mutex (Java's global dataset lock is its known
/// bottleneck, HDFS-15382).
pub const REPLICA_MAP_SHARDS: usize = 64;

/// Most replica events (RECEIVING/RECEIVED/DELETED) sent in one blockReceivedAndDeleted
/// call; a burst of invalidations is split so no single RPC grows unbounded.
pub const IBR_BATCH_MAX: usize = 1000;

/// Delay between attempts to reach the namenode while it is down.
pub const NAMENODE_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Most concurrent DN-to-DN transfers started by namenode commands; the namenode asks
/// for `dfs.namenode.replication.max-streams` (2) at a time anyway.
pub const TRANSFERS_MAX: usize = 16;

/// Largest HTTP request head accepted by the status port.
pub const HTTP_REQUEST_SIZE_MAX: usize = 8 * 1024;

const _: () = assert!(REPLICA_MAP_SHARDS.is_power_of_two());
const _: () = assert!(UNACKED_PACKETS_MAX >= 80, "must exceed the Java client's in-flight window");

/// Largest readahead window honoured: one io_uring FADVISE carries a 32-bit length, and a
/// block is 128 MiB by default anyway.
pub const READAHEAD_BYTES_MAX: u64 = 256 << 20;

/// Stack of the engine threads (a ring polls every connection's task on it): debug builds
/// keep large futures' temporaries on the stack, and std's 2 MiB default has overflowed.
pub const ENGINE_THREAD_STACK_BYTES: usize = 8 << 20;
