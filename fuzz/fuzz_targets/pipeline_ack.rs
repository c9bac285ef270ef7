//! `pipeline_ack`: see `ringfs_common::fuzzing::pipeline_ack` for what is decoded and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringfs_fuzz::run("pipeline_ack", data));
