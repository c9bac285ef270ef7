//! `packet`: see `ringfs_common::fuzzing::packet` for what is decoded and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringfs_fuzz::run("packet", data));
