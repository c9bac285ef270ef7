//! Hadoop IPC over tokio, on top of the sans-I/O codec in `ringfs_common::ipc`.
//!
//! - [`server`]: accepts connections, reads the preamble, answers the SASL negotiation of a
//!   simple-auth server, reads the connection context, and dispatches calls to a [`Service`]
//!   concurrently; responses go back in completion order, matched by call id.
//! - [`client`]: one multiplexed connection per [`RpcClient`], calls matched by call id.

#![forbid(unsafe_code)]

pub mod client;
pub mod frame;
pub mod server;

pub use client::{RpcClient, RpcError};
pub use server::{decode_request, encode_message, CallContext, Service};
