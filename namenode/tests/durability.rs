//! Durability: acknowledged operations survive a crash (the name directory as it is on
//! disk at that moment), replay rebuilds exactly the same namespace, torn tails are cut,
//! corruption is refused, checkpoints prune old images and segments.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{dn, snapshot_dir, FakeDatanode, TestNameNode};
use ringfs_common::ipc::protocol;
use ringfs_namenode::image::encode_image;
use ringfs_namenode::NameNode;
use ringfs_rpc::RpcClient;

fn image_of(nn: &NameNode) -> Vec<u8> {
    let fs = nn.shared().read();
    encode_image(fs.last_txid(), &fs.ns, &fs.blocks)
}

fn mkdirs(src: &str) -> dn::MkdirsRequestProto {
    dn::MkdirsRequestProto {
        src: src.into(),
        masked: dn::FsPermissionProto { perm: 0o755 },
        create_parent: true,
        unmasked: None,
    }
}

/// A mixed workload through RPC, including files with blocks on a fake datanode.
async fn workload(client: &RpcClient, datanode: &FakeDatanode, rounds: usize) {
    for i in 0..rounds {
        let dir = format!("/w/d{i}");
        let _: dn::MkdirsResponseProto = client.call("mkdirs", &mkdirs(&dir)).await.unwrap();
        let file = format!("{dir}/f");
        let create = dn::CreateRequestProto {
            src: file.clone(),
            masked: dn::FsPermissionProto { perm: 0o644 },
            client_name: "writer".into(),
            create_flag: 3,
            create_parent: true,
            replication: 1,
            block_size: 1 << 20,
            ..Default::default()
        };
        let created: dn::CreateResponseProto = client.call("create", &create).await.unwrap();
        let file_id = created.fs.unwrap().file_id;
        let add = dn::AddBlockRequestProto {
            src: file.clone(),
            client_name: "writer".into(),
            file_id,
            ..Default::default()
        };
        let block: dn::AddBlockResponseProto = client.call("addBlock", &add).await.unwrap();
        let mut last = block.block.b.clone();
        last.num_bytes = Some(i as u64 + 1);
        datanode.received(&last, i as u64 + 1).await;
        let complete = dn::CompleteRequestProto {
            src: file.clone(),
            client_name: "writer".into(),
            last: Some(last),
            file_id,
        };
        let done: dn::CompleteResponseProto = client.call("complete", &complete).await.unwrap();
        assert!(done.result);
        match i % 4 {
            0 => {
                let rename = dn::RenameRequestProto { src: file.clone(), dst: format!("{dir}/renamed") };
                let r: dn::RenameResponseProto = client.call("rename", &rename).await.unwrap();
                assert!(r.result);
            }
            1 => {
                let set = dn::SetPermissionRequestProto {
                    src: dir.clone(),
                    permission: dn::FsPermissionProto { perm: 0o700 },
                };
                let _: dn::SetPermissionResponseProto = client.call("setPermission", &set).await.unwrap();
                let own = dn::SetOwnerRequestProto {
                    src: file.clone(),
                    username: Some("alice".into()),
                    groupname: Some("g".into()),
                };
                let _: dn::SetOwnerResponseProto = client.call("setOwner", &own).await.unwrap();
            }
            2 => {
                let delete = dn::DeleteRequestProto { src: dir.clone(), recursive: true };
                let d: dn::DeleteResponseProto = client.call("delete", &delete).await.unwrap();
                assert!(d.result);
            }
            _ => {
                let times = dn::SetTimesRequestProto { src: file.clone(), mtime: 1234, atime: u64::MAX };
                let _: dn::SetTimesResponseProto = client.call("setTimes", &times).await.unwrap();
                let rep = dn::SetReplicationRequestProto { src: file.clone(), replication: 2 };
                let _: dn::SetReplicationResponseProto = client.call("setReplication", &rep).await.unwrap();
            }
        }
    }
    // One file left open (its lease must survive too).
    let create = dn::CreateRequestProto {
        src: "/w/open".into(),
        masked: dn::FsPermissionProto { perm: 0o600 },
        client_name: "still-writing".into(),
        create_flag: 1,
        create_parent: true,
        replication: 1,
        block_size: 1 << 20,
        ..Default::default()
    };
    let _: dn::CreateResponseProto = client.call("create", &create).await.unwrap();
}

#[tokio::test]
async fn a_crash_copy_replays_to_the_same_namespace() {
    let nn = TestNameNode::start(&[("dfs.namenode.checkpoint.txns", "150")]).await;
    let client = RpcClient::connect(&nn.addr(), "root", protocol::CLIENT).await.unwrap();
    let datanode = FakeDatanode::register(&nn.addr(), "dn-1", 9866).await;
    workload(&client, &datanode, 120).await;

    // The monitor checkpoints every 150 transactions and prunes what the images cover.
    let deadline = Instant::now() + Duration::from_secs(20);
    let current = nn.name_dir.join("current");
    let images = || {
        std::fs::read_dir(&current)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("fsimage_"))
            .count()
    };
    while nn.namenode.shared().read().txns_since_checkpoint() >= 150 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(images() <= 2, "old images are pruned");
    let segments = std::fs::read_dir(&current)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("edits_"))
        .count();
    assert!(segments <= 4, "old segments are pruned ({segments} left)");

    let expected = image_of(&nn.namenode);
    let crash = nn.dir.path().join("crash");
    snapshot_dir(&nn.name_dir, &crash);
    let restarted = TestNameNode::restart_on(&crash, &[]).await;
    assert_eq!(image_of(&restarted), expected, "replay reproduces the namespace byte for byte");
    {
        let fs = restarted.shared().read();
        assert!(fs.in_safemode(), "blocks exist and no datanode reported yet");
        let open = fs.ns.resolve_unchecked("/w/open").unwrap().last().unwrap();
        assert_eq!(fs.ns.under_construction(open).unwrap().client_name, "still-writing");
    }
    // A datanode reporting its replicas ends safe mode.
    let replicas: Vec<(u64, u64, u64)> = {
        let fs = restarted.shared().read();
        fs.blocks.iter().map(|(id, e)| (id.0, e.num_bytes, e.gen_stamp)).collect()
    };
    let reporter = FakeDatanode::register(&restarted.rpc_address().to_string(), "dn-1", 9866).await;
    reporter.block_report(&replicas).await;
    assert!(!restarted.shared().read().in_safemode());
    restarted.shutdown().await.unwrap();
    nn.namenode.shutdown().await.unwrap();
}

#[tokio::test]
async fn torn_tails_are_cut_and_corruption_is_refused() {
    let nn = TestNameNode::start(&[]).await;
    let client = Arc::new(RpcClient::connect(&nn.addr(), "root", protocol::CLIENT).await.unwrap());
    for i in 0..50 {
        let _: dn::MkdirsResponseProto = client.call("mkdirs", &mkdirs(&format!("/t/{i}"))).await.unwrap();
    }
    let crash = nn.dir.path().join("crash");
    snapshot_dir(&nn.name_dir, &crash);
    let segment = std::fs::read_dir(crash.join("current"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("edits_"))
        .max()
        .unwrap();
    let intact = std::fs::read(&segment).unwrap();

    // A half-written record and zero-filled space after it.
    let mut torn = intact.clone();
    torn.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
    torn.extend_from_slice(&[0u8; 100]);
    std::fs::write(&segment, &torn).unwrap();
    let restarted = TestNameNode::restart_on(&crash, &[]).await;
    {
        let fs = restarted.shared().read();
        for i in 0..50 {
            assert!(fs.ns.resolve_unchecked(&format!("/t/{i}")).unwrap().last().is_some());
        }
    }
    restarted.shutdown().await.unwrap();
    let after = std::fs::read(&segment).unwrap();
    assert_eq!(after, intact, "the torn tail was cut from the segment");

    // A damaged record in the middle of a segment is corruption, not a torn tail.
    let crash2 = nn.dir.path().join("crash2");
    snapshot_dir(&nn.name_dir, &crash2);
    let segment2 = crash2.join("current").join(segment.file_name().unwrap());
    let mut damaged = std::fs::read(&segment2).unwrap();
    damaged[30] ^= 0xff;
    std::fs::write(&segment2, &damaged).unwrap();
    let config = common::config_for(&crash2, &[]);
    let err = NameNode::start(config).await.err().expect("refuses to start");
    assert!(err.to_string().contains("corrupt"), "{err}");
    nn.namenode.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_clean_shutdown_leaves_an_image_and_nothing_to_replay() {
    let nn = TestNameNode::start(&[]).await;
    let client = RpcClient::connect(&nn.addr(), "root", protocol::CLIENT).await.unwrap();
    for i in 0..20 {
        let _: dn::MkdirsResponseProto = client.call("mkdirs", &mkdirs(&format!("/s/{i}"))).await.unwrap();
    }
    let expected = image_of(&nn.namenode);
    let name_dir = nn.name_dir.clone();
    let _keep = nn.dir;
    nn.namenode.shutdown().await.unwrap();
    let txid = {
        let images: Vec<String> = std::fs::read_dir(name_dir.join("current"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("fsimage_"))
            .collect();
        images.iter().map(|n| n["fsimage_".len()..].parse::<u64>().unwrap()).max().unwrap()
    };
    assert_eq!(txid, 21, "the shutdown checkpoint covers every transaction (/s, then 20 children)");
    let restarted = TestNameNode::restart_on(&name_dir, &[]).await;
    assert_eq!(image_of(&restarted), expected);
    restarted.shutdown().await.unwrap();
}
