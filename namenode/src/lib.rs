//! ringfs NameNode: the HDFS namespace and block manager, serving ClientProtocol (to
//! the Java client, hdfs-native, snakebite) and DatanodeProtocol (to ringfs datanodes)
//! on one Hadoop IPC port, durable through a group-committed edit log and images.
//!
//! - [`namespace`]: the inode tree and Java's permission algorithm.
//! - [`blocks`], [`datanodes`], [`placement`]: block map, datanode registry, placement.
//! - [`fsn`]: the namesystem (every operation, as Java's FSNamesystem).
//! - [`edits`], [`image`], [`journal`], [`storage`]: persistence (sans-I/O codecs plus
//!   the files). Fuzzing entry points: [`edits::decode_edit_records`],
//!   [`edits::decode_edit_record`], [`edits::scan_segment`], [`image::decode_image`],
//!   [`image::decode_image_body`], [`fsn::decode_block_list`].
//! - [`service`], [`server`]: the IPC service and the running namenode.

#![forbid(unsafe_code)]

pub mod blocks;
pub mod codec;
pub mod config;
pub mod datanodes;
pub mod edits;
pub mod error;
pub mod extra_proto;
pub mod fsn;
pub mod idmap;
pub mod ids;
pub mod idtable;
pub mod image;
pub mod journal;
pub mod name;
pub mod namespace;
pub mod permission;
pub mod placement;
pub mod server;
pub mod service;
pub mod storage;

pub use config::NameNodeConfig;
pub use server::{NameNode, NameNodeError};
pub use storage::format;
