//! hdfs-native, the Rust client (a dev-dependency) and its Python wheel, against a fresh
//! ringfs cluster: files of many sizes around the chunk (512 B) and block (1 MiB)
//! boundaries written and read back byte for byte, listing, rename, delete, append.

mod support;

use std::time::Duration;

use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};
use support::{
    first_difference, pattern_bytes, run, Client as RealClient, Cluster, ClusterOptions, RealClients,
};

const BLOCK_SIZE: usize = 1 << 20;
const SIZES: [usize; 9] =
    [0, 1, 511, 512, 513, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE + BLOCK_SIZE / 2];

fn connect(cluster: &Cluster) -> Client {
    ClientBuilder::new().with_url(cluster.uri()).build().expect("hdfs-native: build a client")
}

async fn write_file(client: &Client, path: &str, data: &[u8], piece: usize) -> Result<(), HdfsError> {
    let mut writer = client.create(path, WriteOptions::default().overwrite(true)).await?;
    for chunk in data.chunks(piece.max(1)) {
        writer.write_bytes(bytes::Bytes::copy_from_slice(chunk)).await?;
    }
    writer.close().await
}

async fn read_file(client: &Client, path: &str) -> Result<Vec<u8>, HdfsError> {
    let mut reader = client.read(path).await?;
    let length = reader.file_length();
    Ok(reader.read_bytes(length).await?.to_vec())
}

/// Collects "client, operation: expected ..., saw ..." messages instead of stopping at the first.
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, operation: &str, good: bool, detail: impl FnOnce() -> String) {
        if !good {
            self.0.push(format!("hdfs-native (Rust), {operation}: {}", detail()));
        }
    }

    fn result<T>(&mut self, operation: &str, result: Result<T, HdfsError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.0.push(format!("hdfs-native (Rust), {operation}: expected success, saw error: {e}"));
                None
            }
        }
    }

    fn finish(self, cluster: &Cluster) {
        assert!(
            self.0.is_empty(),
            "{} failure(s):\n\n{}\n\n{}",
            self.0.len(),
            self.0.join("\n\n"),
            cluster.diagnostics()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdfs_native_rust_client() {
    exercise_rust_client(ClusterOptions::default()).await;
}

/// The same with the datanodes on the threads + sendfile engine (the default, `auto`, is
/// io_uring where the kernel allows it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdfs_native_rust_client_threads_engine() {
    exercise_rust_client(ClusterOptions { engine: Some("threads".to_string()), ..ClusterOptions::default() })
        .await;
}

async fn exercise_rust_client(options: ClusterOptions) {
    let cluster = Cluster::start(options);
    let client = connect(&cluster);
    let mut failures = Failures(Vec::new());
    failures.result("mkdirs /native", client.mkdirs("/native", 0o755, true).await);

    for size in SIZES {
        let path = format!("/native/size-{size}");
        let data = pattern_bytes(size, size as u64);
        // Uneven write sizes so writes, packets and chunks never line up.
        if failures
            .result(&format!("write {path} ({size} bytes)"), write_file(&client, &path, &data, 70_001).await)
            .is_none()
        {
            continue;
        }
        if let Some(status) =
            failures.result(&format!("get_file_info {path}"), client.get_file_info(&path).await)
        {
            failures.check(&format!("get_file_info {path}"), status.length == size && !status.isdir, || {
                format!(
                    "expected a file of {size} bytes, saw length {} isdir {}",
                    status.length, status.isdir
                )
            });
            failures.check(
                &format!("get_file_info {path}"),
                status.blocksize == Some(BLOCK_SIZE as u64),
                || {
                    format!(
                        "expected block size {BLOCK_SIZE} (the server default), saw {:?}",
                        status.blocksize
                    )
                },
            );
        }
        if let Some(read) = failures.result(&format!("read {path}"), read_file(&client, &path).await) {
            failures.check(&format!("read {path}"), read == data, || first_difference(&data, &read));
        }
        if size > 2 * 4096 {
            let reader = failures.result(&format!("open {path}"), client.read(&path).await);
            if let Some(reader) = reader {
                let offset = size / 2 - 4096;
                let range = failures
                    .result(&format!("read_range {path} @{offset}"), reader.read_range(offset, 8192).await);
                if let Some(range) = range {
                    let expected = &data[offset..offset + 8192];
                    failures.check(
                        &format!("read_range {path} @{offset}"),
                        range.as_ref() == expected,
                        || first_difference(expected, &range),
                    );
                }
            }
        }
    }

    // Listing: sorted by name, with sizes, and recursive.
    if let Some(entries) = failures.result("list_status /native", client.list_status("/native", false).await)
    {
        let names: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
        let mut expected: Vec<String> = SIZES.iter().map(|s| format!("/native/size-{s}")).collect();
        expected.sort();
        failures.check("list_status /native", names == expected, || {
            format!("expected {expected:?}, saw {names:?}")
        });
        for entry in &entries {
            let size: usize =
                entry.path.rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
            failures.check("list_status /native", entry.length == size, || {
                format!("{}: expected length {size}, saw {}", entry.path, entry.length)
            });
        }
    }
    failures.result("mkdirs /native/deep/er", client.mkdirs("/native/deep/er", 0o755, true).await);
    failures.result("write /native/deep/er/f", write_file(&client, "/native/deep/er/f", b"deep", 4).await);
    if let Some(all) =
        failures.result("list_status -R /native/deep", client.list_status("/native/deep", true).await)
    {
        let paths: Vec<&str> = all.iter().map(|e| e.path.as_str()).collect();
        failures.check(
            "list_status -R /native/deep",
            paths == ["/native/deep/er", "/native/deep/er/f"],
            || format!("expected [/native/deep/er, /native/deep/er/f], saw {paths:?}"),
        );
    }

    // Rename: plain, onto an existing file (refused, then with overwrite), into place.
    let data = pattern_bytes(BLOCK_SIZE + 17, 99);
    failures.result("write /native/r1", write_file(&client, "/native/r1", &data, 65_536).await);
    failures
        .result("rename /native/r1 -> /native/r2", client.rename("/native/r1", "/native/r2", false).await);
    let gone = client.get_file_info("/native/r1").await;
    failures.check("get_file_info after rename", matches!(gone, Err(HdfsError::FileNotFound(_))), || {
        format!("expected FileNotFound for the old name, saw {gone:?}")
    });
    if let Some(read) = failures.result("read /native/r2", read_file(&client, "/native/r2").await) {
        failures.check("read renamed /native/r2", read == data, || first_difference(&data, &read));
    }
    failures.result("write /native/r3", write_file(&client, "/native/r3", b"x", 1).await);
    let refused = client.rename("/native/r3", "/native/r2", false).await;
    failures.check("rename onto an existing file without overwrite", refused.is_err(), || {
        "expected an error, the rename succeeded".to_string()
    });
    failures.result("rename with overwrite", client.rename("/native/r3", "/native/r2", true).await);
    if let Some(status) =
        failures.result("get_file_info /native/r2", client.get_file_info("/native/r2").await)
    {
        failures.check("rename with overwrite replaced the target", status.length == 1, || {
            format!("expected length 1, saw {}", status.length)
        });
    }

    // Append across a block boundary.
    let head = pattern_bytes(BLOCK_SIZE - 3, 5);
    let tail = pattern_bytes(1000, 6);
    failures.result("write /native/append", write_file(&client, "/native/append", &head, 65_536).await);
    match client.append("/native/append").await {
        Ok(mut writer) => {
            failures.result("append write", writer.write_bytes(bytes::Bytes::copy_from_slice(&tail)).await);
            failures.result("append close", writer.close().await);
            let expected = [head.clone(), tail.clone()].concat();
            if let Some(read) =
                failures.result("read after append", read_file(&client, "/native/append").await)
            {
                failures.check("read after append", read == expected, || first_difference(&expected, &read));
            }
        }
        Err(e) => {
            failures.check("append /native/append", false, || format!("expected a writer, saw error {e}"))
        }
    }

    // Delete: file, non-empty directory (refused without recursive), recursive, missing.
    if let Some(deleted) = failures.result("delete /native/r2", client.delete("/native/r2", false).await) {
        failures.check("delete /native/r2", deleted, || "expected true, saw false".to_string());
    }
    let refused = client.delete("/native/deep", false).await;
    failures.check("delete of a non-empty directory without recursive", refused.is_err(), || {
        format!("expected an error, saw {refused:?}")
    });
    if let Some(deleted) =
        failures.result("delete -r /native/deep", client.delete("/native/deep", true).await)
    {
        failures.check("delete -r /native/deep", deleted, || "expected true, saw false".to_string());
    }
    let missing = client.get_file_info("/native/deep/er/f").await;
    failures.check(
        "get_file_info after recursive delete",
        matches!(missing, Err(HdfsError::FileNotFound(_))),
        || format!("expected FileNotFound, saw {missing:?}"),
    );
    if let Some(deleted) =
        failures.result("delete of a missing path", client.delete("/native/nope", false).await)
    {
        failures.check("delete of a missing path", !deleted, || "expected false, saw true".to_string());
    }
    // Java's namenode answers getBlockLocations of a missing path with a
    // FileNotFoundException (not an empty response), which hdfs-native passes on as is.
    let missing = read_file(&client, "/native/nope").await;
    let not_found = match &missing {
        Err(HdfsError::FileNotFound(_)) => true,
        Err(HdfsError::RPCError(class, _)) => class == "java.io.FileNotFoundException",
        _ => false,
    };
    failures.check("read of a missing path", not_found, || {
        format!("expected FileNotFound, saw {:?}", missing.map(|d| d.len()))
    });
    failures.finish(&cluster);
}

/// The hdfs-native Python wheel: tests/interop/python/hdfs_native_check.py prints one
/// PASS/FAIL line per check.
#[test]
fn hdfs_native_python_wheel() {
    let Some(clients) = RealClients::require(RealClient::HdfsNativePython) else { return };
    let cluster = Cluster::start(ClusterOptions::default());
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python/hdfs_native_check.py");
    let mut command = clients.command("python");
    command.arg(&script).arg(cluster.uri()).arg(BLOCK_SIZE.to_string());
    let output = run(&mut command, None, Duration::from_secs(300));
    let mut expected: Vec<String> = SIZES.iter().map(|s| format!("write_read_{s}")).collect();
    expected.extend(
        ["listing", "rename", "delete", "append", "missing_paths_raise_file_not_found"].map(String::from),
    );
    support::assert_all_pass("hdfs-native (Python)", &output, &expected, &cluster);
}
