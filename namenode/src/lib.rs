//! ringfs NameNode (work in progress).

#![forbid(unsafe_code)]

pub mod blocks;
pub mod codec;
pub mod config;
pub mod datanodes;
pub mod edits;
pub mod error;
pub mod idmap;
pub mod ids;
pub mod image;
pub mod journal;
pub mod name;
pub mod namespace;
pub mod permission;
pub mod placement;
