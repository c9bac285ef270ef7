//! DatanodeProtocol over real RPC with stand-in datanodes: registration (the namenode
//! keeps the address it saw), the write path completing on incremental reports,
//! commands coming back in heartbeats, re-registration of unknown nodes, and the
//! per-datanode block counts of datanode reports.

mod common;

use common::{dn, FakeDatanode, TestNameNode};
use ringfs_common::ipc::protocol;
use ringfs_rpc::RpcClient;

fn invalidated(response: &dn::HeartbeatResponseProto) -> Vec<u64> {
    response
        .cmds
        .iter()
        .filter_map(|c| c.blk_cmd.as_ref())
        .filter(|c| c.action == dn::block_command_proto::Action::Invalidate as i32)
        .flat_map(|c| c.blocks.iter().map(|b| b.block_id))
        .collect()
}

#[tokio::test]
async fn datanodes_register_report_and_receive_commands() {
    let nn = TestNameNode::start(&[]).await;
    let dn1 = FakeDatanode::register(&nn.addr(), "dn-1", 50010).await;
    let dn2 = FakeDatanode::register(&nn.addr(), "dn-2", 50011).await;
    let client = RpcClient::connect(&nn.addr(), "root", protocol::CLIENT).await.unwrap();

    let report: dn::GetDatanodeReportResponseProto =
        client.call("getDatanodeReport", &dn::GetDatanodeReportRequestProto { r#type: 2 }).await.unwrap();
    assert_eq!(report.di.len(), 2);
    assert!(report
        .di
        .iter()
        .all(|d| d.id.ip_addr == "127.0.0.1" && d.location.as_deref() == Some("/default-rack")));
    let storage: dn::GetDatanodeStorageReportResponseProto = client
        .call("getDatanodeStorageReport", &dn::GetDatanodeStorageReportRequestProto { r#type: 1 })
        .await
        .unwrap();
    assert_eq!(storage.datanode_storage_reports.len(), 2);
    assert_eq!(storage.datanode_storage_reports[0].storage_reports.len(), 1);
    let stats: dn::GetFsStatsResponseProto =
        client.call("getFsStats", &dn::GetFsStatusRequestProto {}).await.unwrap();
    assert_eq!(stats.capacity, 2 << 40);

    // Write a file with replication 2: both nodes are the pipeline.
    let create = dn::CreateRequestProto {
        src: "/f".into(),
        masked: dn::FsPermissionProto { perm: 0o644 },
        client_name: "writer".into(),
        create_flag: 1,
        create_parent: true,
        replication: 2,
        block_size: 1 << 20,
        ..Default::default()
    };
    let created: dn::CreateResponseProto = client.call("create", &create).await.unwrap();
    let file_id = created.fs.unwrap().file_id;
    let add = dn::AddBlockRequestProto {
        src: "/f".into(),
        client_name: "writer".into(),
        file_id,
        ..Default::default()
    };
    let block: dn::AddBlockResponseProto = client.call("addBlock", &add).await.unwrap();
    let located = block.block;
    assert_eq!(located.locs.len(), 2);
    let mut storages = located.storage_i_ds.clone();
    storages.sort();
    assert_eq!(storages, vec!["DS-dn-1".to_string(), "DS-dn-2".to_string()]);
    assert_eq!(located.block_token.kind, "", "tokens are off but present");

    let mut last = located.b.clone();
    last.num_bytes = Some(1000);
    let complete = dn::CompleteRequestProto {
        src: "/f".into(),
        client_name: "writer".into(),
        last: Some(last.clone()),
        file_id,
    };
    let done: dn::CompleteResponseProto = client.call("complete", &complete).await.unwrap();
    assert!(!done.result, "not until a replica is reported");
    dn1.received(&last, 1000).await;
    dn2.received(&last, 1000).await;
    let done: dn::CompleteResponseProto = client.call("complete", &complete).await.unwrap();
    assert!(done.result);
    let locations: dn::GetBlockLocationsResponseProto = client
        .call(
            "getBlockLocations",
            &dn::GetBlockLocationsRequestProto { src: "/f".into(), offset: 0, length: u64::MAX >> 1 },
        )
        .await
        .unwrap();
    let locations = locations.locations.unwrap();
    assert_eq!(locations.file_length, 1000);
    assert!(locations.is_last_block_complete && !locations.under_construction);
    assert_eq!(locations.blocks[0].locs.len(), 2);

    // Deleting the file sends each holder an invalidation with its next heartbeat.
    let _: dn::DeleteResponseProto =
        client.call("delete", &dn::DeleteRequestProto { src: "/f".into(), recursive: false }).await.unwrap();
    assert_eq!(invalidated(&dn1.heartbeat().await), vec![last.block_id]);
    assert_eq!(invalidated(&dn2.heartbeat().await), vec![last.block_id]);

    // A replica of a block nobody owns is invalidated after a block report.
    dn1.block_report(&[(4242, 10, 1001)]).await;
    assert_eq!(invalidated(&dn1.heartbeat().await), vec![4242]);

    // A node the namenode does not know is asked to register.
    let mut stranger = dn2.registration.clone();
    stranger.datanode_id.datanode_uuid = "never-registered".into();
    let response: dn::HeartbeatResponseProto = dn2
        .rpc
        .call("sendHeartbeat", &dn::HeartbeatRequestProto { registration: stranger, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(response.cmds[0].cmd_type, dn::datanode_command_proto::Type::RegisterCommand as i32);
    // Unknown DatanodeProtocol methods answer RpcNoSuchMethodException.
    let err = dn1
        .rpc
        .call::<_, dn::VersionResponseProto>("cacheReport", &dn::VersionRequestProto {})
        .await
        .unwrap_err();
    assert_eq!(err.remote().unwrap().class_name, ringfs_common::ipc::exception::NO_SUCH_METHOD);
    nn.namenode.shutdown().await.unwrap();
}

/// numBlocks of every live datanode, in registration order of `uuids`.
async fn block_counts(client: &RpcClient, uuids: &[&str]) -> Vec<u32> {
    let report: dn::GetDatanodeReportResponseProto =
        client.call("getDatanodeReport", &dn::GetDatanodeReportRequestProto { r#type: 2 }).await.unwrap();
    uuids
        .iter()
        .map(|uuid| {
            let node = report.di.iter().find(|d| d.id.datanode_uuid == *uuid).expect("reported");
            node.num_blocks.expect("numBlocks is always sent")
        })
        .collect()
}

/// Writes a one-block file of replication 2 on both nodes, reported by incremental reports
/// only; returns its block.
async fn write_file(client: &RpcClient, path: &str, nodes: [&FakeDatanode; 2]) -> dn::ExtendedBlockProto {
    let create = dn::CreateRequestProto {
        src: path.into(),
        masked: dn::FsPermissionProto { perm: 0o644 },
        client_name: "writer".into(),
        create_flag: 1,
        create_parent: true,
        replication: 2,
        block_size: 1 << 20,
        ..Default::default()
    };
    let created: dn::CreateResponseProto = client.call("create", &create).await.unwrap();
    let file_id = created.fs.unwrap().file_id;
    let add = dn::AddBlockRequestProto {
        src: path.into(),
        client_name: "writer".into(),
        file_id,
        ..Default::default()
    };
    let block: dn::AddBlockResponseProto = client.call("addBlock", &add).await.unwrap();
    let mut last = block.block.b;
    last.num_bytes = Some(10);
    for node in nodes {
        node.received(&last, 10).await;
    }
    let complete = dn::CompleteRequestProto {
        src: path.into(),
        client_name: "writer".into(),
        last: Some(last.clone()),
        file_id,
    };
    let done: dn::CompleteResponseProto = client.call("complete", &complete).await.unwrap();
    assert!(done.result);
    last
}

/// `dfsadmin -report`'s "Num of Blocks" follows incremental reports and deletions, not
/// only full block reports.
#[tokio::test]
async fn datanode_reports_count_blocks_between_full_reports() {
    let nn = TestNameNode::start(&[]).await;
    let dn1 = FakeDatanode::register(&nn.addr(), "dn-1", 50010).await;
    let dn2 = FakeDatanode::register(&nn.addr(), "dn-2", 50011).await;
    let client = RpcClient::connect(&nn.addr(), "root", protocol::CLIENT).await.unwrap();
    let uuids = ["dn-1", "dn-2"];
    assert_eq!(block_counts(&client, &uuids).await, vec![0, 0]);

    let a = write_file(&client, "/a", [&dn1, &dn2]).await;
    write_file(&client, "/b", [&dn1, &dn2]).await;
    assert_eq!(block_counts(&client, &uuids).await, vec![2, 2], "RECEIVED replicas count at once");

    // A replica reported RECEIVED again (a re-sent report) is not counted twice.
    dn1.received(&a, 10).await;
    assert_eq!(block_counts(&client, &uuids).await, vec![2, 2]);

    dn1.deleted(&a).await;
    assert_eq!(block_counts(&client, &uuids).await, vec![1, 2], "a DELETED replica stops counting");

    // Deleting a file takes its blocks' replicas out of every count.
    let _: dn::DeleteResponseProto =
        client.call("delete", &dn::DeleteRequestProto { src: "/b".into(), recursive: false }).await.unwrap();
    assert_eq!(block_counts(&client, &uuids).await, vec![0, 1]);

    // A full report still sets the truth: dn-2 no longer has /a's replica.
    dn2.block_report(&[]).await;
    assert_eq!(block_counts(&client, &uuids).await, vec![0, 0]);
    dn1.block_report(&[(a.block_id, 10, a.generation_stamp)]).await;
    assert_eq!(block_counts(&client, &uuids).await, vec![1, 0]);
    nn.namenode.shutdown().await.unwrap();
}
