//! DatanodeProtocol over real RPC with stand-in datanodes: registration (the namenode
//! keeps the address it saw), the write path completing on incremental reports,
//! commands coming back in heartbeats, and re-registration of unknown nodes.

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
