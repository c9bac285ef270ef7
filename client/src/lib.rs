//! ringfs's native HDFS client, on tokio: the namenode's ClientProtocol over our own
//! IPC client ([`NamenodeClient`]), DataTransferProtocol block reads and pipeline writes
//! ([`BlockReader`], [`BlockWriter`]), and the file API on top ([`DfsClient`],
//! [`FileReader`], [`FileWriter`]). The shell, the benchmark and the tests use it.
//!
//! ```no_run
//! # async fn demo() -> ringfs_client::Result<()> {
//! use ringfs_client::{ClientConfig, DfsClient};
//! let client = DfsClient::connect(ClientConfig::new("127.0.0.1:8020")).await?;
//! let mut file = client.create("/tmp/hello", true, None, None).await?;
//! file.write_all(b"hello").await?;
//! file.close().await?;
//! assert_eq!(client.read_file("/tmp/hello").await?, b"hello");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod block_reader;
pub mod block_writer;
pub mod datanode;
pub mod dfs;
pub mod error;
pub mod file_reader;
pub mod file_writer;
pub mod namenode;
pub mod status;
pub mod time;

pub use block_reader::{BlockReader, ReadBlockRequest};
pub use block_writer::{BlockWriter, PipelineSetup, PipelineStage};
pub use dfs::{resolve_path, uri_authority, ClientConfig, DfsClient, WriteOptions};
pub use error::{DfsError, Result};
pub use file_reader::FileReader;
pub use file_writer::FileWriter;
pub use namenode::{create_flag, default_user, CreateOptions, LeaseGuard, NamenodeClient};
pub use ringfs_common::checksum::FileChecksum;
pub use status::{ContentSummary, FileKind, FileStatus, FsStats, QuotaUsage};
