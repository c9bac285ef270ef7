//! Inputs the fuzzers found that once crashed the namenode's on-disk decoders; each must
//! now be refused with a typed error.

use ringfs_namenode::image::decode_image_body;

/// An image body naming block id u64::MAX: loading it computed `id + 1` for the next id
/// to allocate and overflowed. Block ids are bounded at decode (ids::BLOCK_ID_MAX).
#[test]
fn image_with_block_id_max_is_refused() {
    let body = include_bytes!("data/image-block-id-max.bin");
    let Err(error) = decode_image_body(body) else { panic!("a block id beyond BLOCK_ID_MAX is refused") };
    assert!(error.to_string().contains("block id"), "{error}");
}

/// Every stored fuzz input of the namenode targets (fuzz/corpus and fuzz/regressions for
/// edit_log*, image*) decodes to a value or a typed error, without panicking. The fuzz
/// crate's richer oracles run under libFuzzer (scripts/fuzz.sh); this keeps the stored
/// inputs honest on the stable toolchain.
#[test]
fn stored_fuzz_inputs_decode_without_panicking() {
    use ringfs_namenode::edits::decode_edit_records;
    use ringfs_namenode::image::decode_image;
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        for target in ["edit_log", "edit_log_structured", "image", "image_structured"] {
            let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else { continue };
            for entry in dir {
                let path = entry.expect("dir entry").path();
                let input = std::fs::read(&path).expect("read fuzz input");
                let outcome = std::panic::catch_unwind(|| {
                    let _ = decode_edit_records(&input);
                    let _ = decode_image(&input);
                    let _ = decode_image_body(&input);
                });
                assert!(outcome.is_ok(), "{} panicked the decoders", path.display());
                count += 1;
            }
        }
    }
    assert!(count > 0, "no stored namenode fuzz inputs under {}", fuzz.display());
}
