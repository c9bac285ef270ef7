//! `rpc_server_structured`: a valid structure built from the input, checked, corrupted and handed to the
//! byte-level oracle (see `ringfs_fuzz::structured`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringfs_fuzz::run_structured("rpc_server_structured", data));
