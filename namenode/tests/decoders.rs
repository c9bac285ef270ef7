//! The sans-I/O decoders the fuzz targets call never panic and never accept damage
//! silently: valid inputs with random bytes flipped, cut or appended either decode to
//! something or return an error.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringfs_namenode::blocks::{BlockMap, BlockRecord, BlockState};
use ringfs_namenode::edits::{
    decode_edit_record, decode_edit_records, encode_edit_record, encode_segment_header, scan_segment, EditOp,
};
use ringfs_namenode::fsn::decode_block_list;
use ringfs_namenode::ids::{BlockId, InodeId, ROOT_INODE_ID};
use ringfs_namenode::image::{decode_image, decode_image_body, encode_image};
use ringfs_namenode::name::Name;
use ringfs_namenode::namespace::{Body, Inode, Namespace};

const ROUNDS: usize = 3000;

fn valid_segment() -> Vec<u8> {
    let mut bytes = encode_segment_header(1).to_vec();
    let ops = [
        EditOp::Mkdir {
            id: InodeId(16386),
            parent: ROOT_INODE_ID,
            name: "d".into(),
            owner: "u".into(),
            group: "g".into(),
            perm: 0o755,
            mtime_ms: 1,
        },
        EditOp::SetTimes { id: InodeId(16386), mtime_ms: Some(2), atime_ms: None },
        EditOp::UpdateBlocks {
            file: InodeId(16387),
            blocks: vec![BlockRecord { id: BlockId(1_073_741_825), gen_stamp: 1001, num_bytes: 9 }],
            mtime_ms: None,
        },
        EditOp::Delete { id: InodeId(16386), mtime_ms: 3 },
    ];
    for (i, op) in ops.iter().enumerate() {
        encode_edit_record(1 + i as u64, op, &mut bytes);
    }
    bytes
}

fn valid_image() -> Vec<u8> {
    let mut ns = Namespace::new("hdfs", "supergroup", 0o755, 0);
    let mut blocks = BlockMap::new();
    let owner = ns.strings.intern("alice").unwrap();
    for i in 0..5u64 {
        let id = ns.allocate_inode_id();
        let block = blocks.allocate_block_id();
        ns.insert(
            id,
            Inode {
                parent: ROOT_INODE_ID,
                mtime_ms: i as i64,
                atime_ms: 0,
                name: Name::new(&format!("file-{i}")),
                owner,
                group: 1,
                perm: 0o644,
                replication: 3,
                body: Body::File { blocks: vec![block].into_boxed_slice(), blocksize: 1 << 20 },
            },
        )
        .unwrap();
        blocks.insert(BlockRecord { id: block, gen_stamp: 1001, num_bytes: i }, id, BlockState::Complete);
    }
    encode_image(7, &ns, &blocks)
}

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    match rng.random_range(0..4) {
        0 => {
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
        }
        1 => bytes.truncate(rng.random_range(0..bytes.len())),
        2 => {
            let extra: Vec<u8> = (0..rng.random_range(1..64)).map(|_| rng.random()).collect();
            bytes.extend(extra);
        }
        _ => {
            let i = rng.random_range(0..bytes.len());
            bytes[i] = [0x00, 0x7f, 0x80, 0xff][rng.random_range(0..4)];
        }
    }
    bytes
}

#[test]
fn edit_decoders_survive_damage() {
    let mut rng = StdRng::seed_from_u64(0xed175);
    let segment = valid_segment();
    assert_eq!(scan_segment(&segment).unwrap().records.len(), 4);
    for _ in 0..ROUNDS {
        let damaged = mutate(&mut rng, &segment);
        if let Ok(scan) = scan_segment(&damaged) {
            assert!(scan.valid_len <= damaged.len());
            assert!(scan.records.len() <= 4 || damaged.len() > segment.len());
        }
        let _ = decode_edit_records(&damaged[20.min(damaged.len())..]);
        let _ = decode_edit_record(&damaged);
        let noise: Vec<u8> = (0..rng.random_range(0..200)).map(|_| rng.random()).collect();
        let _ = scan_segment(&noise);
        let _ = decode_edit_records(&noise);
    }
}

#[test]
fn image_decoders_survive_damage() {
    let mut rng = StdRng::seed_from_u64(0x1a6e);
    let image = valid_image();
    assert_eq!(decode_image(&image).unwrap().namespace.file_count(), 5);
    for _ in 0..ROUNDS {
        let damaged = mutate(&mut rng, &image);
        if damaged != image {
            assert!(decode_image(&damaged).is_err(), "the checksum catches every change");
        }
        // Without the checksum the body decoder must still refuse or accept cleanly.
        if damaged.len() > 16 {
            if let Ok(contents) = decode_image_body(&damaged[12..damaged.len() - 4]) {
                contents.namespace.verify().unwrap();
            }
        }
        let noise: Vec<u8> = (0..rng.random_range(0..300)).map(|_| rng.random()).collect();
        let _ = decode_image(&noise);
        let _ = decode_image_body(&noise);
    }
}

#[test]
fn block_list_decoder_survives_noise() {
    let mut rng = StdRng::seed_from_u64(0xb10c);
    for _ in 0..ROUNDS {
        let mut longs: Vec<u64> = (0..rng.random_range(0..40)).map(|_| rng.random_range(0..8)).collect();
        if rng.random_bool(0.3) && longs.len() > 2 {
            longs[0] = rng.random();
        }
        if let Ok(replicas) = decode_block_list(&longs) {
            assert!(replicas.len() * 3 <= longs.len());
        }
    }
}
