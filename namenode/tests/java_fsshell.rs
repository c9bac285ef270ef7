//! The metadata half of `hadoop fs` (Apache Hadoop 3.5 FsShell) against an in-process
//! namenode. One JVM runs every command (a small driver compiled at test time), so the
//! whole batch costs one JVM start. Skipped, with the reason printed, when the Java
//! client is not installed (~/.cache/ringfs-deps/env.sh, from scripts/install-clients.sh).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::TestNameNode;
use tokio::io::AsyncWriteExt;

const DRIVER: &str = r#"
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FsShell;
import org.apache.hadoop.util.ToolRunner;
import java.io.BufferedReader;
import java.io.InputStreamReader;

public class ShellBatch {
  public static void main(String[] argv) throws Exception {
    Configuration conf = new Configuration();
    conf.set("fs.defaultFS", argv[0]);
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
    String line;
    int n = 0;
    while ((line = in.readLine()) != null) {
      if (line.isEmpty()) continue;
      String[] args = line.split("\t");
      System.out.println("@@BEGIN " + n);
      System.err.println("@@BEGIN " + n);
      int rc;
      FsShell shell = new FsShell(conf);
      try {
        rc = ToolRunner.run(shell, args);
      } catch (Exception e) {
        e.printStackTrace();
        rc = -1;
      } finally {
        shell.close();
      }
      System.out.flush();
      System.err.flush();
      System.out.println("@@END " + n + " " + rc);
      System.err.println("@@END " + n + " " + rc);
      n++;
    }
  }
}
"#;

fn deps_env() -> Option<PathBuf> {
    let home = std::env::var("HOME").ok()?;
    let env = Path::new(&home).join(".cache/ringfs-deps/env.sh");
    env.exists().then_some(env)
}

/// The output of one FsShell command.
#[derive(Debug)]
struct Outcome {
    rc: i32,
    stdout: String,
    stderr: String,
}

fn split_outcomes(stdout: &str, stderr: &str, count: usize) -> Vec<Outcome> {
    let section = |text: &str, n: usize| -> (String, Option<i32>) {
        let begin = format!("@@BEGIN {n}\n");
        let end = format!("@@END {n} ");
        let Some(start) = text.find(&begin) else { return (String::new(), None) };
        let body = &text[start + begin.len()..];
        let Some(stop) = body.find(&end) else { return (body.to_string(), None) };
        let rc = body[stop + end.len()..].lines().next().and_then(|l| l.trim().parse().ok());
        (body[..stop].to_string(), rc)
    };
    (0..count)
        .map(|n| {
            let (out, rc) = section(stdout, n);
            let (err, _) = section(stderr, n);
            Outcome { rc: rc.unwrap_or(-99), stdout: out, stderr: err }
        })
        .collect()
}

/// Runs FsShell commands (each a list of arguments) in one JVM as `user`.
async fn fsshell(env: &Path, work: &Path, url: &str, user: &str, commands: &[Vec<&str>]) -> Vec<Outcome> {
    let classes = work.join("classes");
    if !classes.join("ShellBatch.class").exists() {
        std::fs::create_dir_all(&classes).unwrap();
        std::fs::write(work.join("ShellBatch.java"), DRIVER).unwrap();
        let script = format!(
            ". '{}' && \"$RINGFS_JAVAC\" -cp \"$(hadoop classpath)\" -d '{}' '{}'",
            env.display(),
            classes.display(),
            work.join("ShellBatch.java").display()
        );
        let status = tokio::process::Command::new("bash").arg("-c").arg(script).status().await.unwrap();
        assert!(status.success(), "compiling the FsShell driver failed");
    }
    let script = format!(
        ". '{}' && exec \"$RINGFS_JAVA\" -Xmx256m -cp '{}':\"$(hadoop classpath)\" ShellBatch '{url}'",
        env.display(),
        classes.display()
    );
    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("HADOOP_USER_NAME", user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let input: String = commands.iter().map(|c| c.join("\t") + "\n").collect();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("FsShell batch finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let outcomes = split_outcomes(&stdout, &stderr, commands.len());
    assert!(outcomes.iter().all(|o| o.rc != -99), "a command did not finish:\n{stdout}\n{stderr}");
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsshell_metadata_commands_behave_as_on_hdfs() {
    let Some(env) = deps_env() else {
        println!("SKIPPED: the Java Hadoop client is not installed (run scripts/install-clients.sh)");
        return;
    };
    let nn = TestNameNode::start(&[]).await;
    let work = nn.dir.path().join("java");
    let url = nn.url();
    let commands: Vec<Vec<&str>> = vec![
        vec!["-mkdir", "-p", "/user/root/a/b"],                        // 0
        vec!["-mkdir", "/user/root/a"],                                // 1: exists
        vec!["-touchz", "/user/root/a/f1"],                            // 2
        vec!["-touchz", "/user/root/a/f1"],                            // 3: empty file again is fine
        vec!["-ls", "-R", "/user"],                                    // 4
        vec!["-mv", "/user/root/a/f1", "/user/root/a/b"],              // 5: into the directory
        vec!["-test", "-e", "/user/root/a/b/f1"],                      // 6
        vec!["-test", "-e", "/user/root/a/f1"],                        // 7
        vec!["-chmod", "-R", "700", "/user/root/a"],                   // 8
        vec!["-stat", "%a %n", "/user/root/a/b/f1"],                   // 9
        vec!["-chown", "-R", "alice:staff", "/user/root/a"],           // 10
        vec!["-stat", "%u %g %F", "/user/root/a/b"],                   // 11
        vec!["-setrep", "2", "/user/root/a/b/f1"],                     // 12
        vec!["-stat", "%r %b %o", "/user/root/a/b/f1"],                // 13
        vec!["-test", "-d", "/user/root/a"],                           // 14
        vec!["-test", "-f", "/user/root/a"],                           // 15
        vec!["-test", "-z", "/user/root/a/b/f1"],                      // 16
        vec!["-count", "/user"],                                       // 17
        vec!["-count", "-q", "/user"],                                 // 18
        vec!["-du", "-s", "/user"],                                    // 19
        vec!["-mkdir", "relative"],                                    // 20: under /user/root
        vec!["-ls", "/nonexistent"],                                   // 21
        vec!["-rm", "-r", "/user/root/a"],                             // 22
        vec!["-test", "-e", "/user/root/a"],                           // 23
        vec!["-ls", "/user/root"],                                     // 24
        vec!["-test", "-w", "/user/root"],                             // 25
        vec!["-getfattr", "-d", "/user/root"],                         // 26
        vec!["-getfacl", "/user/root"],                                // 27
        vec!["-df", "/"],                                              // 28
        vec!["-touch", "-m", "-t", "20200101:000000", "/user/root/t"], // 29
        vec!["-stat", "%y", "/user/root/t"],                           // 30
    ];
    let out = fsshell(&env, &work, &url, "root", &commands).await;
    let ok = |i: usize| assert_eq!(out[i].rc, 0, "command {i} {:?} failed: {:?}", commands[i], out[i]);
    for i in [0, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 22, 24, 25, 26, 27, 28, 29, 30]
    {
        ok(i);
    }
    assert_eq!(out[1].rc, 1);
    assert!(out[1].stderr.contains("File exists"), "{:?}", out[1]);
    let listing = &out[4].stdout;
    for path in ["/user/root", "/user/root/a", "/user/root/a/b", "/user/root/a/f1"] {
        assert!(listing.lines().any(|l| l.ends_with(&format!(" {path}"))), "{path} missing from:\n{listing}");
    }
    assert!(
        listing.lines().any(|l| l.starts_with("-rw-r--r--   3 root supergroup          0 ")),
        "{listing}"
    );
    assert_eq!(out[7].rc, 1);
    assert_eq!(out[9].stdout.trim(), "700 f1");
    assert_eq!(out[11].stdout.trim(), "alice staff directory");
    assert!(out[12].stdout.contains("Replication 2 set: /user/root/a/b/f1"), "{:?}", out[12]);
    assert_eq!(out[13].stdout.trim(), "2 0 134217728");
    assert_eq!(out[15].rc, 1);
    let count: Vec<&str> = out[17].stdout.split_whitespace().collect();
    assert_eq!(count, vec!["4", "1", "0", "/user"]);
    let quota: Vec<&str> = out[18].stdout.split_whitespace().collect();
    assert_eq!(quota, vec!["none", "inf", "none", "inf", "4", "1", "0", "/user"]);
    let du: Vec<&str> = out[19].stdout.split_whitespace().collect();
    assert_eq!(du, vec!["0", "0", "/user"]);
    assert_eq!(out[21].rc, 1);
    assert!(out[21].stderr.contains("No such file or directory"), "{:?}", out[21]);
    assert!(out[22].stdout.contains("Deleted /user/root/a"), "{:?}", out[22]);
    assert_eq!(out[23].rc, 1);
    assert!(out[24].stdout.contains("/user/root/relative"), "{:?}", out[24]);
    assert!(
        out[27].stdout.contains("# owner: root") && out[27].stdout.contains("other::r-x"),
        "{:?}",
        out[27]
    );
    assert_eq!(out[30].stdout.trim(), "2020-01-01 00:00:00");

    // Another user is held to the permissions.
    let denied = fsshell(
        &env,
        &work,
        &url,
        "bob",
        &[
            vec!["-mkdir", "/user/root/bobs"],
            vec!["-ls", "/user/root"],
            vec!["-rm", "-r", "/user/root/relative"],
        ],
    )
    .await;
    assert_eq!(denied[0].rc, 1);
    assert!(
        denied[0].stderr.contains(
            "Permission denied: user=bob, access=WRITE, inode=\"/user/root\":root:supergroup:drwxr-xr-x"
        ),
        "{:?}",
        denied[0]
    );
    assert_eq!(denied[1].rc, 0, "reading is allowed: {:?}", denied[1]);
    assert_eq!(denied[2].rc, 1);
    assert!(denied[2].stderr.contains("Permission denied: user=bob, access=WRITE"), "{:?}", denied[2]);
    nn.namenode.shutdown().await.unwrap();
}
