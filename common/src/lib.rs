//! The shared protocol crate of ringfs: Hadoop IPC framing, DataTransferProtocol ops,
//! packets and acks, checksums, and the `.proto` types. No I/O: decoders take bytes and
//! return frames or typed errors, so servers, clients and fuzzers share them.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod conf;
pub mod dtp;
pub mod fuzzing;
pub mod ipc;
pub mod limits;
pub mod path;
pub mod proto;
