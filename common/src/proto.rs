//! Generated prost types for every message ringfs exchanges (see `common/proto/`).

#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

/// `hadoop.common`: IPC headers, SASL, connection context, tokens.
pub mod common {
    include!(concat!(env!("OUT_DIR"), "/hadoop.common.rs"));
}

/// `hadoop.hdfs`: core types, ClientProtocol and DataTransferProtocol messages.
pub mod hdfs {
    include!(concat!(env!("OUT_DIR"), "/hadoop.hdfs.rs"));

    /// `hadoop.hdfs.datanode`: DatanodeProtocol messages.
    pub mod datanode {
        include!(concat!(env!("OUT_DIR"), "/hadoop.hdfs.datanode.rs"));
    }
}
