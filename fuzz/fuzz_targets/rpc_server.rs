//! `rpc_server`: see `ringfs_common::fuzzing::rpc_server` for what is decoded and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringfs_fuzz::run("rpc_server", data));
