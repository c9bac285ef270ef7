//! Namespace memory per file: a namesystem holding many closed single-block files, built
//! through the same EditOps the RPCs log, measured as resident set growth under mimalloc
//! (allocator rounding and spare capacity included). `RINGFS_MEMORY_FILES` sets the file count
//! (default 100,000; the figure quoted in the docs uses 1,000,000 in a release build).

use std::sync::Arc;

use ringfs_namenode::blocks::{BlockMap, BlockRecord};
use ringfs_namenode::config::NameNodeConfig;
use ringfs_namenode::edits::EditOp;
use ringfs_namenode::fsn::{NamespaceInfo, Namesystem};
use ringfs_namenode::ids::{InodeId, ROOT_INODE_ID};
use ringfs_namenode::image::{decode_image, encode_image};
use ringfs_namenode::namespace::Namespace;

// The allocator the `ringfs` binary uses, so resident growth is what production sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Files per directory, as a typical job output directory holds.
const FILES_PER_DIRECTORY: usize = 250;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

#[test]
fn namespace_memory_per_single_block_file() {
    let files: usize =
        std::env::var("RINGFS_MEMORY_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let info = NamespaceInfo {
        cluster_id: "CID-m".into(),
        namespace_id: 1,
        block_pool_id: "BP-1-127.0.0.1-1".into(),
        c_time: 0,
        layout_version: -66,
    };
    let config = Arc::new(NameNodeConfig::for_tests("/nonexistent".into()));
    let mut fs = Namesystem::new(
        config,
        info,
        Namespace::new("hdfs", "supergroup", 0o755, 0),
        BlockMap::new(),
        0,
        "hdfs".into(),
    );
    let rss_before = resident_bytes();
    let mut dir = ROOT_INODE_ID;
    for i in 0..files {
        if i % FILES_PER_DIRECTORY == 0 {
            dir = fs.ns.allocate_inode_id();
            let op = EditOp::Mkdir {
                id: dir,
                parent: ROOT_INODE_ID,
                name: format!("job_{:07}", i / FILES_PER_DIRECTORY),
                owner: "etl".into(),
                group: "hadoop".into(),
                perm: 0o755,
                mtime_ms: 1_700_000_000_000,
            };
            fs.log(op).unwrap();
        }
        let id: InodeId = fs.ns.allocate_inode_id();
        let create = EditOp::CreateFile {
            id,
            parent: dir,
            name: format!("part-{:05}", i % FILES_PER_DIRECTORY),
            owner: "etl".into(),
            group: "hadoop".into(),
            perm: 0o644,
            mtime_ms: 1_700_000_000_000 + i as i64,
            replication: 3,
            blocksize: 134_217_728,
            client_name: "DFSClient_NONMAPREDUCE_1".into(),
            client_machine: "10.0.0.1".into(),
        };
        fs.log(create).unwrap();
        let block = BlockRecord {
            id: fs.blocks.allocate_block_id(),
            gen_stamp: fs.blocks.allocate_gen_stamp(),
            num_bytes: 0,
        };
        fs.log(EditOp::AddBlock { file: id, block, previous_num_bytes: None }).unwrap();
        let closed = BlockRecord { num_bytes: 64 * 1024 * 1024, ..block };
        fs.log(EditOp::CloseFile { file: id, mtime_ms: 1_700_000_000_001 + i as i64, blocks: vec![closed] })
            .unwrap();
    }
    // The redundancy monitor drains this set every interval; it is not namespace state.
    fs.redundancy.needed.clear();
    let live = fs.ns.heap_bytes() + fs.blocks.heap_bytes();
    let rss = resident_bytes().saturating_sub(rss_before);
    println!(
        "{files} single-block files built at runtime: live heap {:.1} bytes per file, resident growth {:.1} bytes per file",
        live as f64 / files as f64,
        rss as f64 / files as f64
    );

    // After a restart the maps are sized exactly from the image: the steady state.
    let image = encode_image(0, &fs.ns, &fs.blocks);
    drop(fs);
    let started = std::time::Instant::now();
    let loaded = decode_image(&image).expect("image decodes");
    println!("image of {files} files decoded in {} ms", started.elapsed().as_millis());
    assert_eq!(loaded.namespace.file_count(), files as u64);
    assert_eq!(loaded.blocks.len(), files);
    let loaded_live = loaded.namespace.heap_bytes() + loaded.blocks.heap_bytes();
    let per_file = loaded_live as f64 / files as f64;
    println!(
        "after loading the image: live heap {per_file:.1} bytes per file ({} bytes of image)",
        image.len()
    );
    // Design figure ~152 bytes: 88 (inode box and its inode table slot), 40 (block table
    // slot), 8 (the file's block list), 16 (its entry in the parent's children: id and
    // name key).
    assert!(per_file < 200.0, "a loaded namespace takes {per_file:.1} bytes per file");
    assert!((live as f64 / files as f64) < 200.0, "a namespace grown at runtime takes too much");
}
