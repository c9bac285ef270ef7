//! The ringfs DataNode: stores HDFS blocks in HDFS's on-disk layout, serves the
//! DataTransferProtocol on its data port, and reports to the namenode.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod context;
pub mod engine;
pub mod events;
pub mod http;
pub mod io;
pub mod ipc_service;
pub mod limits;
pub mod namenode;
pub mod net;
pub mod node;
pub mod ops;
pub mod recovery;
pub mod store;
pub mod transfer;

pub use node::{DataNode, DataNodeError, ReadyInfo};
