//! ringfs-bench: how fast ringfs is on this machine, how close to what the machine can do,
//! and how much the io_uring datanode engine buys over the threads engine.
//!
//! The harness measures the machine's ceilings itself ([`ceilings`]), then drives a cluster
//! (spawned by [`cluster`] or given by URI) through the data-path, metadata, memory and
//! restart scenarios, and writes a table, `results.json`, `report.md` and SVG plots
//! ([`report`], [`plots`]).

#![forbid(unsafe_code)]

pub mod ceilings;
pub mod cluster;
pub mod dfsio;
pub mod interop;
pub mod machine;
pub mod metadata;
pub mod plan;
pub mod plots;
pub mod profile;
pub mod progress;
pub mod report;
pub mod restarts;
pub mod results;
pub mod runner;
pub mod stats;
