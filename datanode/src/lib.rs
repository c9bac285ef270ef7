//! The ringfs DataNode: stores HDFS blocks in HDFS's on-disk layout, serves the
//! DataTransferProtocol on its data port, and reports to the namenode.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod limits;
pub mod store;
