//! `edit_log`: the namenode's on-disk decoders (see `ringfs_fuzz::namenode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringfs_fuzz::run_namenode("edit_log", data));
