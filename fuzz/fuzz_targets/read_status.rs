//! `read_status`: see `ringfs_common::fuzzing::read_status` for what is decoded and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringfs_fuzz::run("read_status", data));
