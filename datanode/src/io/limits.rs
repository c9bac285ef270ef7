//! Resource limits of the io_uring layer, each with the reason for its value. Relations
//! between them are checked at compile time; runtime configuration is validated against
//! them in [`RingConfig::validate`](super::RingConfig::validate).

use ringfs_common::limits::{
    BYTES_PER_CHECKSUM, CHECKSUM_SIZE, PACKET_HEADER_SIZE_MAX, PACKET_SIZE_MAX, READ_PACKET_DATA_SIZE,
    WRITE_PACKET_DATA_SIZE,
};

/// Submission queue entries per ring. A read packet is a chain of 4 SQEs and a ring serves
/// tens of connections: 256 lets one loop iteration submit every ready connection's next
/// step with a single io_uring_enter.
pub const SUBMISSION_ENTRIES: u32 = 256;

/// Operations in flight per ring: the in-flight slab's size. When it is full, new ops wait
/// for a slot (backpressure) rather than growing the slab.
pub const IN_FLIGHT_MAX: usize = 1024;

/// Completions one in-flight op can post at worst: its result, plus a SEND_ZC notification
/// or a linked timeout's completion, plus the completion of a cancel aimed at it.
pub const COMPLETIONS_PER_OP_MAX: usize = 3;

/// Completion queue entries: enough for every in-flight op's worst case, so the kernel never
/// has to hold overflowed completions aside.
pub const COMPLETION_ENTRIES: u32 = 4096;

/// Completions copied out of the CQ per batch (TigerBeetle reaps 256 at a time).
pub const CQE_BATCH_MAX: usize = 256;

/// SQEs one [`Chain`](super::Chain) may link: 8 read packets of 4 linked SQEs each
/// (meta READ_FIXED, header SEND, file->pipe SPLICE, pipe->socket SPLICE).
pub const CHAIN_OPS_MAX: usize = 32;

/// Size of a packet slot: one write packet as the Java client and hdfs-native send it
/// (64,512 data bytes + 504 CRC bytes + 33 header bytes) fits with room to spare; a
/// larger packet (up to 16 MiB, Hadoop's cap) takes several contiguous slots.
pub const PACKET_SLOT_SIZE: usize = 128 * 1024;

/// Size of a control slot: op requests, responses, acks, and a read packet's header plus
/// CRCs (33 + 128 x 4 bytes).
pub const CONTROL_SLOT_SIZE: usize = 4096;

/// Alignment of an arena and of each slot: a page, so registration pins whole pages and a
/// slot is usable for O_DIRECT.
pub const ARENA_ALIGNMENT: usize = 4096;

/// Registered-buffer index of the control arena.
pub const BUFFER_INDEX_CONTROL: u16 = 0;

/// Registered-buffer index of the packet arena.
pub const BUFFER_INDEX_PACKET: u16 = 1;

/// Concurrent data-port connections one ring is budgeted for by default. More may connect;
/// they queue for slots (backpressure) instead of allocating.
pub const CONNECTIONS_PER_RING_DEFAULT: usize = 64;

/// Packet slots one connection uses at once: a write keeps one packet being received, one
/// being forwarded and written, and two queued; a READ_FIXED + SEND_ZC read keeps up to four
/// packets in flight.
pub const PACKET_SLOTS_PER_CONNECTION: usize = 4;

/// Control slots one connection uses at once: request/response, ack in, ack out, and a
/// read packet's header + CRCs.
pub const CONTROL_SLOTS_PER_CONNECTION: usize = 8;

/// Fixed-file slots one connection uses at once: the block file and its `.meta`.
pub const FIXED_FILES_PER_CONNECTION: usize = 2;

/// Replicas one ring may have open at once (reads and writes). A write holds its files for
/// the whole block, so this is sized well past the connection budget: a slow writer must
/// not make readers wait for a slot. A sparse table costs the kernel 8 bytes per slot.
pub const OPEN_REPLICAS_PER_RING_MAX: usize = 512;

/// Default packet slots per ring: 64 connections x 4 = 256 slots = 32 MiB pinned per ring.
pub const PACKET_SLOT_COUNT_DEFAULT: usize = CONNECTIONS_PER_RING_DEFAULT * PACKET_SLOTS_PER_CONNECTION;

/// Default control slots per ring: 64 connections x 8 = 512 slots = 2 MiB.
pub const CONTROL_SLOT_COUNT_DEFAULT: usize = CONNECTIONS_PER_RING_DEFAULT * CONTROL_SLOTS_PER_CONNECTION;

/// Default fixed-file slots per ring (capped at RLIMIT_NOFILE when the ring is built,
/// which the kernel requires of a file table).
pub const FIXED_FILE_COUNT_DEFAULT: usize = OPEN_REPLICAS_PER_RING_MAX * FIXED_FILES_PER_CONNECTION;

/// Default pipes per ring: one per concurrently served splice read. Pooled because a pipe
/// per connection hits `pipe-user-pages-soft` near 1,024 connections.
pub const PIPE_COUNT_DEFAULT: usize = CONNECTIONS_PER_RING_DEFAULT;

/// Capacity of a pooled pipe (F_SETPIPE_SZ): twice a read packet's data. A pipe holds one
/// page reference per slot, and a packet that starts mid-page (chunk offsets are 512-byte
/// aligned, not page aligned) spans one page more than its size: with a 64 KiB pipe such a
/// file->pipe splice stops 1 page short (measured: 64,536 of 65,536 bytes at offset 1000).
pub const PIPE_SIZE: usize = 2 * READ_PACKET_DATA_SIZE.next_power_of_two();

/// Times an op that completed with EINTR or EAGAIN is resubmitted before it is an error.
/// Blocking sockets and pipes make both rare; the bound keeps a stuck fd from spinning.
pub const TRANSIENT_RETRIES_MAX: u32 = 16;

/// How long dropping a runtime waits for cancelled ops to complete before it gives up,
/// leaks the arenas (so the kernel can never write into freed memory) and panics.
pub const DRAIN_TIMEOUT_MS: u64 = 10_000;

/// Bytes of a read packet's header and CRCs: what a control slot must hold.
pub const READ_PACKET_PREFIX_SIZE_MAX: usize =
    PACKET_HEADER_SIZE_MAX + READ_PACKET_DATA_SIZE / BYTES_PER_CHECKSUM as usize * CHECKSUM_SIZE;

const _: () = assert!(SUBMISSION_ENTRIES.is_power_of_two());
const _: () = assert!(COMPLETION_ENTRIES.is_power_of_two());
const _: () = assert!(COMPLETION_ENTRIES as usize > IN_FLIGHT_MAX * COMPLETIONS_PER_OP_MAX);
const _: () = assert!(CHAIN_OPS_MAX <= SUBMISSION_ENTRIES as usize);
const _: () = assert!(CQE_BATCH_MAX <= COMPLETION_ENTRIES as usize);
const _: () = assert!(IN_FLIGHT_MAX < u32::MAX as usize);
const _: () = assert!(READ_PACKET_PREFIX_SIZE_MAX <= CONTROL_SLOT_SIZE);
const _: () = assert!(
    PACKET_HEADER_SIZE_MAX
        + WRITE_PACKET_DATA_SIZE / BYTES_PER_CHECKSUM as usize
            * (CHECKSUM_SIZE + BYTES_PER_CHECKSUM as usize)
        <= PACKET_SLOT_SIZE
);
const _: () = assert!(PACKET_SLOT_SIZE.is_multiple_of(ARENA_ALIGNMENT));
const _: () = assert!(CONTROL_SLOT_SIZE.is_multiple_of(ARENA_ALIGNMENT));
const _: () = assert!(PACKET_SLOT_SIZE * PACKET_SLOT_COUNT_DEFAULT >= PACKET_SIZE_MAX);
const _: () = assert!(PIPE_SIZE >= READ_PACKET_DATA_SIZE + 4096);
