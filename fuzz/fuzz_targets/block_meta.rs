//! `block_meta`: see `ringfs_common::fuzzing::block_meta` for what is decoded and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringfs_fuzz::run("block_meta", data));
