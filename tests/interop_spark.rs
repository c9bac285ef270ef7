//! Spark (pyspark 4, local mode) against a fresh ringfs cluster: a word count reads a
//! multi-block text file from hdfs:// and writes its result back to hdfs:// through
//! Hadoop's FileOutputCommitter (RDD saveAsTextFile) and the DataFrame writer.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use hdfs_native::{Client as NativeClient, ClientBuilder, WriteOptions};
use support::{run, Client, Cluster, ClusterOptions, RealClients};

/// Words of the generated input; counts differ per word so a mixed-up result shows.
const WORDS: &[&str] = &["ringfs", "hdfs", "spark", "block", "datanode", "namenode", "río", "x"];

fn input_text() -> (String, BTreeMap<String, u64>) {
    let mut text = String::new();
    let mut counts = BTreeMap::new();
    let mut line_number = 0u64;
    // About 2.5 MiB: three 1 MiB blocks, so Spark reads several splits.
    while text.len() < 5 * (1 << 20) / 2 {
        let mut line = Vec::new();
        for (i, word) in WORDS.iter().enumerate() {
            if (line_number + i as u64).is_multiple_of(i as u64 + 1) {
                line.push(*word);
                *counts.entry(word.to_string()).or_insert(0) += 1;
            }
        }
        line_number += 1;
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    (text, counts)
}

async fn read_dir_files(client: &NativeClient, dir: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for status in client.list_status(dir, false).await? {
        if status.isdir {
            continue;
        }
        let mut reader = client.read(&status.path).await?;
        let length = reader.file_length();
        files.push((status.path.clone(), reader.read_bytes(length).await?.to_vec()));
    }
    Ok(files)
}

#[test]
fn spark_word_count_reads_and_writes_hdfs() {
    let Some(clients) = RealClients::require(Client::Spark) else { return };
    let cluster = Cluster::start(ClusterOptions::default());
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let client = ClientBuilder::new().with_url(cluster.uri()).build().expect("hdfs-native client");
    let (text, expected) = input_text();
    runtime.block_on(async {
        client.mkdirs("/spark", 0o755, true).await.expect("mkdirs /spark");
        let mut writer =
            client.create("/spark/input.txt", WriteOptions::default()).await.expect("create input");
        writer.write_bytes(bytes::Bytes::from(text.clone().into_bytes())).await.expect("write input");
        writer.close().await.expect("close input");
    });

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python/wordcount.py");
    let work = support::test_dir("spark");
    let mut command = clients.command("spark-submit");
    command
        .env("HADOOP_CONF_DIR", cluster.conf_dir())
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("SPARK_LOCAL_DIRS", &work)
        .args([
            "--master",
            "local[2]",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.driver.host=127.0.0.1",
        ])
        .arg(&script)
        .arg(cluster.url("/spark/input.txt"))
        .arg(cluster.url("/spark/output"));
    let output = run(&mut command, None, Duration::from_secs(600));
    assert!(
        output.success() && output.stdout_text().contains("WORDCOUNT"),
        "Spark: spark-submit wordcount.py {} {}: expected exit 0 and a WORDCOUNT line\n{}\n\n{}",
        cluster.url("/spark/input.txt"),
        cluster.url("/spark/output"),
        output.describe(),
        cluster.diagnostics()
    );

    // The 2.5 MiB input spans three 1 MiB blocks; Spark splits by block locations.
    let partitions: Option<u32> = output
        .stdout_text()
        .lines()
        .find_map(|l| l.strip_prefix("WORDCOUNT "))
        .and_then(|rest| support::parse_fields(rest).get("partitions")?.parse().ok());
    assert!(
        partitions.is_some_and(|p| p >= 3),
        "Spark: expected at least 3 input partitions (one per block), saw {partitions:?}\n{}",
        output.describe()
    );
    let (rdd_files, csv_files) = runtime.block_on(async {
        (
            read_dir_files(&client, "/spark/output").await.expect("list /spark/output"),
            read_dir_files(&client, "/spark/output-df").await.expect("list /spark/output-df"),
        )
    });
    let mut problems = Vec::new();
    for (dir, files) in [("/spark/output", &rdd_files), ("/spark/output-df", &csv_files)] {
        if !files.iter().any(|(path, _)| path.ends_with("/_SUCCESS")) {
            problems.push(format!("{dir}: expected the committer's _SUCCESS marker, saw {:?}", names(files)));
        }
        if files.iter().any(|(path, _)| path.contains("_temporary")) {
            problems.push(format!("{dir}: the committer left _temporary behind: {:?}", names(files)));
        }
    }
    let parse = |files: &[(String, Vec<u8>)], separator: char| -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for (path, bytes) in
            files.iter().filter(|(p, _)| p.rsplit('/').next().is_some_and(|n| n.starts_with("part-")))
        {
            for line in String::from_utf8_lossy(bytes).lines() {
                match line
                    .rsplit_once(separator)
                    .and_then(|(w, c)| Some((w.to_string(), c.parse::<u64>().ok()?)))
                {
                    Some((word, count)) => *counts.entry(word).or_insert(0) += count,
                    None => *counts.entry(format!("<unparsable line {line:?} in {path}>")).or_insert(0) += 1,
                }
            }
        }
        counts
    };
    let rdd_counts = parse(&rdd_files, '\t');
    if rdd_counts != expected {
        problems.push(format!(
            "/spark/output (saveAsTextFile): expected counts {expected:?}, saw {rdd_counts:?}"
        ));
    }
    let csv_counts = parse(&csv_files, ',');
    if csv_counts != expected {
        problems.push(format!(
            "/spark/output-df (DataFrame CSV): expected counts {expected:?}, saw {csv_counts:?}"
        ));
    }
    assert!(
        problems.is_empty(),
        "Spark word count: {} problem(s):\n{}\n\n{}\n\n{}",
        problems.len(),
        problems.join("\n"),
        output.describe(),
        cluster.diagnostics()
    );
}

fn names(files: &[(String, Vec<u8>)]) -> Vec<&str> {
    files.iter().map(|(p, _)| p.as_str()).collect()
}
