//! ClientProtocol over real RPC: hdfs-native for what it exposes, the ringfs RPC client
//! for the exact wire behaviour (empty replies, paging, exception classes, flags).

mod common;

use std::sync::Arc;

use common::TestNameNode;
use hdfs_native::{HdfsError, WriteOptions};
use ringfs_common::ipc::{exception, protocol};
use ringfs_common::proto::hdfs::*;
use ringfs_rpc::{RpcClient, RpcError};

async fn rpc(nn: &TestNameNode, user: &str) -> RpcClient {
    RpcClient::connect(&nn.addr(), user, protocol::CLIENT).await.expect("connect")
}

fn remote_class(err: &RpcError) -> &str {
    err.remote().map(|r| r.class_name.as_str()).unwrap_or("(not a remote error)")
}

fn mkdirs_request(src: &str, perm: u32) -> MkdirsRequestProto {
    MkdirsRequestProto {
        src: src.into(),
        masked: FsPermissionProto { perm },
        create_parent: true,
        unmasked: None,
    }
}

async fn listing(client: &RpcClient, src: &str, start_after: &[u8]) -> Option<DirectoryListingProto> {
    let request = GetListingRequestProto {
        src: src.into(),
        start_after: start_after.to_vec().into(),
        need_location: false,
    };
    let response: GetListingResponseProto = client.call("getListing", &request).await.unwrap();
    response.dir_list
}

#[tokio::test]
async fn hdfs_native_metadata_operations() {
    let nn = TestNameNode::start(&[]).await;
    let client = nn.client();

    client.mkdirs("/a/b/c", 0o755, true).await.unwrap();
    let status = client.get_file_info("/a/b/c").await.unwrap();
    assert!(status.isdir);
    assert_eq!(status.path, "/a/b/c", "getFileInfo answers with an empty path field");
    assert_eq!(status.permission, 0o755);
    assert!(matches!(client.get_file_info("/missing").await, Err(HdfsError::FileNotFound(_))));
    assert!(client.mkdirs("/x/y", 0o755, false).await.is_err(), "no parent without createParent");

    // Empty files: create, close (complete with no last block), rename, delete.
    for name in ["e1", "e2"] {
        let mut writer = client.create(&format!("/a/{name}"), WriteOptions::default()).await.unwrap();
        writer.close().await.unwrap();
    }
    let e1 = client.get_file_info("/a/e1").await.unwrap();
    assert!(!e1.isdir);
    assert_eq!(e1.length, 0);
    assert_eq!(e1.replication, Some(3));
    assert_eq!(e1.blocksize, Some(134_217_728));
    assert!(client.create("/a/e1", WriteOptions::default()).await.is_err(), "exists without overwrite");

    client.rename("/a/e1", "/a/b/moved", false).await.unwrap();
    assert!(client.get_file_info("/a/e1").await.is_err());
    assert!(client.rename("/a/e2", "/a/b/moved", false).await.is_err(), "rename2 refuses an existing target");
    client.rename("/a/e2", "/a/b/moved", true).await.unwrap();
    let names: Vec<String> =
        client.list_status("/a/b", false).await.unwrap().into_iter().map(|s| s.path).collect();
    assert_eq!(names, vec!["/a/b/c", "/a/b/moved"]);

    client.set_permission("/a/b/moved", 0o600).await.unwrap();
    client.set_owner("/a/b/moved", Some("alice"), Some("staff")).await.unwrap();
    let moved = client.get_file_info("/a/b/moved").await.unwrap();
    assert_eq!((moved.permission, moved.owner.as_str(), moved.group.as_str()), (0o600, "alice", "staff"));
    client.set_times("/a/b/moved", 1_000_000, 2_000_000).await.unwrap();
    let moved = client.get_file_info("/a/b/moved").await.unwrap();
    assert_eq!((moved.modification_time, moved.access_time), (1_000_000, 2_000_000));
    assert!(client.set_replication("/a/b/moved", 2).await.unwrap());
    assert!(!client.set_replication("/a/b", 2).await.unwrap(), "setReplication on a directory is false");

    let summary = client.get_content_summary("/a").await.unwrap();
    assert_eq!((summary.file_count, summary.directory_count, summary.length), (1, 3, 0));
    assert_eq!((summary.quota, summary.space_quota), (u64::MAX, u64::MAX), "no quota is -1 on the wire");

    assert!(client.delete("/a/b", false).await.is_err(), "non-empty without recursive");
    assert!(client.delete("/a/b", true).await.unwrap());
    assert!(!client.delete("/a/b", true).await.unwrap(), "already gone");
    let all = client.list_status("/", true).await.unwrap();
    assert_eq!(all.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(), vec!["/a"]);
    nn.namenode.shutdown().await.unwrap();
}

#[tokio::test]
async fn listing_ten_thousand_entries_pages_by_thousand() {
    let nn = TestNameNode::start(&[]).await;
    let client = Arc::new(rpc(&nn, "root").await);
    let mut tasks = Vec::new();
    for worker in 0..50 {
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            for i in (worker..10_000).step_by(50) {
                let request = mkdirs_request(&format!("/big/d{i:05}"), 0o755);
                let response: MkdirsResponseProto = client.call("mkdirs", &request).await.unwrap();
                assert!(response.result);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let first = listing(&client, "/big", b"").await.unwrap();
    assert_eq!(first.partial_listing.len(), 1000);
    assert_eq!(first.remaining_entries, 9000);
    assert_eq!(&first.partial_listing[0].path[..], b"d00000", "local names only");
    let mut seen = first.partial_listing.len();
    let mut last = first.partial_listing.last().unwrap().path.to_vec();
    loop {
        let page = listing(&client, "/big", &last).await.unwrap();
        seen += page.partial_listing.len();
        if let Some(entry) = page.partial_listing.last() {
            last = entry.path.to_vec();
        }
        if page.remaining_entries == 0 {
            break;
        }
    }
    assert_eq!(seen, 10_000);
    assert_eq!(last, b"d09999");
    // startAfter need not name an existing entry.
    let page = listing(&client, "/big", b"d04999x").await.unwrap();
    assert_eq!(&page.partial_listing[0].path[..], b"d05000");

    let hdfs = nn.client();
    let entries = hdfs.list_status("/big", false).await.unwrap();
    assert_eq!(entries.len(), 10_000);
    assert!(entries.windows(2).all(|w| w[0].path < w[1].path));
    let summary = hdfs.get_content_summary("/").await.unwrap();
    assert_eq!(summary.directory_count, 10_002);
    nn.namenode.shutdown().await.unwrap();
}

#[tokio::test]
async fn permissions_are_enforced_for_other_users() {
    let nn = TestNameNode::start(&[]).await;
    let root = nn.client();
    root.mkdirs("/private", 0o700, true).await.unwrap();
    root.mkdirs("/shared", 0o777, true).await.unwrap();
    root.mkdirs("/tmp", 0o777, true).await.unwrap();
    root.set_permission("/tmp", 0o1777).await.unwrap();

    let alice = rpc(&nn, "alice").await;
    let err = alice.call::<_, MkdirsResponseProto>("mkdirs", &mkdirs_request("/x", 0o755)).await.unwrap_err();
    assert_eq!(remote_class(&err), exception::ACCESS_CONTROL);
    let message = &err.remote().unwrap().message;
    assert!(message.starts_with("Permission denied: user=alice, access=WRITE, inode=\"/\":"), "{message}");
    assert!(message.ends_with(":drwxr-xr-x"), "{message}");
    let err = alice
        .call::<_, GetListingResponseProto>(
            "getListing",
            &GetListingRequestProto {
                src: "/private".into(),
                start_after: Default::default(),
                need_location: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(remote_class(&err), exception::ACCESS_CONTROL);
    assert!(err.remote().unwrap().message.contains("access=READ_EXECUTE, inode=\"/private\""));

    // hdfs-native as alice: allowed where permitted, denied elsewhere.
    let as_alice = nn.client_as("alice");
    as_alice.mkdirs("/shared/mine", 0o755, true).await.unwrap();
    assert_eq!(as_alice.get_file_info("/shared/mine").await.unwrap().owner, "alice");
    let mut w = as_alice.create("/tmp/alice-file", WriteOptions::default()).await.unwrap();
    w.close().await.unwrap();
    assert!(as_alice.set_permission("/private", 0o777).await.is_err(), "not the owner");
    assert!(
        as_alice.set_owner("/shared/mine", Some("bob"), None).await.is_err(),
        "only superusers give files away"
    );

    // Sticky /tmp: bob cannot delete alice's file.
    let bob = rpc(&nn, "bob").await;
    let err = bob
        .call::<_, DeleteResponseProto>(
            "delete",
            &DeleteRequestProto { src: "/tmp/alice-file".into(), recursive: false },
        )
        .await
        .unwrap_err();
    assert_eq!(remote_class(&err), exception::ACCESS_CONTROL);
    assert!(err.remote().unwrap().message.starts_with("Permission denied by sticky bit"));
    // checkAccess: -test -w
    let err = bob
        .call::<_, CheckAccessResponseProto>(
            "checkAccess",
            &CheckAccessRequestProto { path: "/shared/mine".into(), mode: FsActionProto::Write as i32 },
        )
        .await
        .unwrap_err();
    assert_eq!(remote_class(&err), exception::ACCESS_CONTROL);
    let _: CheckAccessResponseProto = bob
        .call(
            "checkAccess",
            &CheckAccessRequestProto { path: "/shared/mine".into(), mode: FsActionProto::ReadExecute as i32 },
        )
        .await
        .unwrap();
    // Admin operations need the superuser.
    let err = bob
        .call::<_, GetDatanodeReportResponseProto>(
            "getDatanodeReport",
            &GetDatanodeReportRequestProto { r#type: 1 },
        )
        .await
        .unwrap_err();
    assert_eq!(err.remote().unwrap().message, "Access denied for user bob. Superuser privilege is required");
    nn.namenode.shutdown().await.unwrap();
}

#[tokio::test]
async fn wire_details_clients_depend_on() {
    let nn = TestNameNode::start(&[("fs.trash.interval", "60")]).await;
    let client = rpc(&nn, "root").await;

    let response: GetFileInfoResponseProto =
        client.call("getFileInfo", &GetFileInfoRequestProto { src: "/nope".into() }).await.unwrap();
    assert!(response.fs.is_none(), "a missing path is an empty reply, not an exception");
    assert!(listing(&client, "/nope", b"").await.is_none());
    let err = client
        .call::<_, GetBlockLocationsResponseProto>(
            "getBlockLocations",
            &GetBlockLocationsRequestProto { src: "/nope".into(), offset: 0, length: 1 },
        )
        .await
        .unwrap_err();
    assert_eq!(remote_class(&err), exception::FILE_NOT_FOUND);

    let defaults: GetServerDefaultsResponseProto =
        client.call("getServerDefaults", &GetServerDefaultsRequestProto {}).await.unwrap();
    let d = defaults.server_defaults;
    assert_eq!(d.checksum_type, Some(ChecksumTypeProto::ChecksumCrc32c as i32));
    assert_eq!(d.trash_interval, Some(60));
    assert_eq!((d.block_size, d.replication, d.bytes_per_checksum), (134_217_728, 3, 512));

    let err = client.call::<_, MsyncResponseProto>("noSuchCall", &MsyncRequestProto {}).await.unwrap_err();
    assert_eq!(remote_class(&err), exception::NO_SUCH_METHOD);
    let _: MsyncResponseProto = client.call("msync", &MsyncRequestProto {}).await.unwrap();
    let ha: HaServiceStateResponseProto =
        client.call("getHAServiceState", &HaServiceStateRequestProto {}).await.unwrap();
    assert_eq!(ha.state, HaServiceStateProto::Active as i32);

    // Create flags: CREATE alone on an existing file fails; OVERWRITE alone on a missing one too.
    let create = |src: &str, flag: u32| CreateRequestProto {
        src: src.into(),
        masked: FsPermissionProto { perm: 0o644 },
        client_name: "c1".into(),
        create_flag: flag,
        create_parent: true,
        replication: 1,
        block_size: 1 << 20,
        ..Default::default()
    };
    let created: CreateResponseProto = client.call("create", &create("/dir/f", 1)).await.unwrap();
    let status = created.fs.expect("create returns the status");
    assert!(status.path.is_empty());
    assert_eq!(
        (status.file_id, status.blocksize, status.block_replication),
        (Some(16387), Some(1 << 20), Some(1))
    );
    let err = client.call::<_, CreateResponseProto>("create", &create("/dir/f", 1)).await.unwrap_err();
    assert_eq!(remote_class(&err), exception::ALREADY_BEING_CREATED, "the same client still writes it");
    let err = client.call::<_, CreateResponseProto>("create", &create("/dir/g", 2)).await.unwrap_err();
    assert_eq!(remote_class(&err), exception::FILE_NOT_FOUND);
    let err = client.call::<_, CreateResponseProto>("create", &create("/dir", 3)).await.unwrap_err();
    assert_eq!(remote_class(&err), exception::FILE_ALREADY_EXISTS);
    let err = client.call::<_, CreateResponseProto>("create", &create("/dir/f/x", 3)).await.unwrap_err();
    assert_eq!(remote_class(&err), exception::PARENT_NOT_DIRECTORY);
    let err = client.call::<_, CreateResponseProto>("create", &create("/dir/../x", 3)).await.unwrap_err();
    assert_eq!(remote_class(&err), exception::INVALID_PATH);
    let complete: CompleteResponseProto = client
        .call(
            "complete",
            &CompleteRequestProto {
                src: "/dir/f".into(),
                client_name: "c1".into(),
                last: None,
                file_id: Some(16387),
            },
        )
        .await
        .unwrap();
    assert!(complete.result);
    let closed: IsFileClosedResponseProto =
        client.call("isFileClosed", &IsFileClosedRequestProto { src: "/dir/f".into() }).await.unwrap();
    assert!(closed.result);
    // A listing of a file is that file, with an empty name.
    let single = listing(&client, "/dir/f", b"").await.unwrap();
    assert_eq!(single.partial_listing.len(), 1);
    assert!(single.partial_listing[0].path.is_empty());

    // setTimes: -1 leaves a time alone.
    let before: GetFileInfoResponseProto =
        client.call("getFileInfo", &GetFileInfoRequestProto { src: "/dir/f".into() }).await.unwrap();
    let _: SetTimesResponseProto = client
        .call("setTimes", &SetTimesRequestProto { src: "/dir/f".into(), mtime: 5, atime: u64::MAX })
        .await
        .unwrap();
    let after: GetFileInfoResponseProto =
        client.call("getFileInfo", &GetFileInfoRequestProto { src: "/dir/f".into() }).await.unwrap();
    assert_eq!(after.fs.as_ref().unwrap().modification_time, 5);
    assert_eq!(after.fs.unwrap().access_time, before.fs.unwrap().access_time);

    // Old rename: false instead of exceptions; into an existing directory.
    let rename = |src: &str, dst: &str| RenameRequestProto { src: src.into(), dst: dst.into() };
    let r: RenameResponseProto = client.call("rename", &rename("/missing", "/x")).await.unwrap();
    assert!(!r.result);
    let _: MkdirsResponseProto = client.call("mkdirs", &mkdirs_request("/other", 0o755)).await.unwrap();
    let r: RenameResponseProto = client.call("rename", &rename("/dir/f", "/other")).await.unwrap();
    assert!(r.result);
    let moved: GetFileInfoResponseProto =
        client.call("getFileInfo", &GetFileInfoRequestProto { src: "/other/f".into() }).await.unwrap();
    assert!(moved.fs.is_some());
    let r: RenameResponseProto = client.call("rename", &rename("/other", "/other/inside")).await.unwrap();
    assert!(!r.result, "into itself");
    let err = client
        .call::<_, Rename2ResponseProto>(
            "rename2",
            &Rename2RequestProto {
                src: "/missing".into(),
                dst: "/y".into(),
                overwrite_dest: false,
                move_to_trash: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(remote_class(&err), exception::FILE_NOT_FOUND);

    let err = client
        .call::<_, DeleteResponseProto>(
            "delete",
            &DeleteRequestProto { src: "/other".into(), recursive: false },
        )
        .await
        .unwrap_err();
    assert_eq!(remote_class(&err), exception::PATH_IS_NOT_EMPTY_DIRECTORY);

    // Safe mode: entered by the superuser, refuses mutations, left again.
    let safemode =
        |action: SafeModeActionProto| SetSafeModeRequestProto { action: action as i32, checked: None };
    let s: SetSafeModeResponseProto =
        client.call("setSafeMode", &safemode(SafeModeActionProto::SafemodeEnter)).await.unwrap();
    assert!(s.result);
    let err =
        client.call::<_, MkdirsResponseProto>("mkdirs", &mkdirs_request("/z", 0o755)).await.unwrap_err();
    assert_eq!(remote_class(&err), exception::SAFE_MODE);
    let s: SetSafeModeResponseProto =
        client.call("setSafeMode", &safemode(SafeModeActionProto::SafemodeLeave)).await.unwrap();
    assert!(!s.result);

    let stats: GetFsStatsResponseProto =
        client.call("getFsStats", &GetFsStatusRequestProto {}).await.unwrap();
    assert_eq!(stats.capacity, 0);
    let report: GetDatanodeReportResponseProto =
        client.call("getDatanodeReport", &GetDatanodeReportRequestProto { r#type: 1 }).await.unwrap();
    assert!(report.di.is_empty());
    let acl: GetAclStatusResponseProto =
        client.call("getAclStatus", &GetAclStatusRequestProto { src: "/other".into() }).await.unwrap();
    assert_eq!(acl.result.owner, "root");
    assert!(acl.result.entries.is_empty());
    let quota: GetQuotaUsageResponseProto =
        client.call("getQuotaUsage", &GetQuotaUsageRequestProto { path: "/".into() }).await.unwrap();
    assert_eq!((quota.usage.file_and_directory_count, quota.usage.quota), (4, u64::MAX));
    nn.namenode.shutdown().await.unwrap();
}
