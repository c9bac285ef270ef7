//! `dtp_op`: see `ringfs_common::fuzzing::dtp_op` for what is decoded and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringfs_fuzz::run("dtp_op", data));
