//! `rpc_client`: see `ringfs_common::fuzzing::rpc_client` for what is decoded and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringfs_fuzz::run("rpc_client", data));
