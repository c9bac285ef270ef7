//! Runs `hadoop fs` commands in batches (one JVM, see `java/FsShellBatch.java`) and checks
//! each command's exit code, output and side effects, collecting every failure with the
//! command, what was expected and what was seen.
//!
//! Included with `#[path]` by the interop test binaries that drive the Java FsShell; each
//! uses a different part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{clip, first_difference, run, Cluster, RealClients};

/// What one shell command did.
pub struct Outcome {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Outcome {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_text().lines().map(str::to_string).collect()
    }

    pub fn describe(&self) -> String {
        let stdout = match std::str::from_utf8(&self.stdout) {
            Ok(text) => format!("{:?}", clip(text, 1500)),
            Err(_) => {
                let head: String = self.stdout.iter().take(32).map(|b| format!("{b:02x}")).collect();
                format!("<{} bytes of binary, starting {head}>", self.stdout.len())
            }
        };
        format!("exit {}; stdout {stdout}; stderr {:?}", self.code, clip(&filter_noise(&self.stderr), 3000))
    }
}

/// Drops JVM/log4j lines that are not the shell's own output.
pub fn filter_noise(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|line| !line.contains("WARN util.NativeCodeLoader") && !line.contains("NativeCodeLoader"))
        .collect::<Vec<_>>()
        .join("\n")
}

type Check = Box<dyn Fn(&Outcome) -> Result<(), String>>;

/// One command and what it must do.
pub struct Step {
    args: Vec<String>,
    stdin: Option<PathBuf>,
    user: Option<String>,
    checks: Vec<(String, Check)>,
}

impl Step {
    /// Feeds `path` as the command's standard input.
    pub fn stdin(&mut self, path: &Path) -> &mut Self {
        self.stdin = Some(path.to_path_buf());
        self
    }

    /// Runs the command as `user` (UserGroupInformation.createRemoteUser(user).doAs).
    pub fn user(&mut self, user: &str) -> &mut Self {
        self.user = Some(user.to_string());
        self
    }

    pub fn check(
        &mut self,
        expectation: impl Into<String>,
        check: impl Fn(&Outcome) -> Result<(), String> + 'static,
    ) -> &mut Self {
        self.checks.push((expectation.into(), Box::new(check)));
        self
    }

    pub fn code(&mut self, code: i32) -> &mut Self {
        self.check(format!("exit code {code}"), move |o| {
            if o.code == code {
                Ok(())
            } else {
                Err(format!("exit code {}", o.code))
            }
        })
    }

    /// Exit code 0.
    pub fn ok(&mut self) -> &mut Self {
        self.code(0)
    }

    /// Exit code 1 and `message` as a line of stderr (HDFS prints `cmd: `path': reason`).
    pub fn fails(&mut self, message: &str) -> &mut Self {
        let message = message.to_string();
        self.code(1).check(format!("stderr line {message:?}"), move |o| {
            if o.stderr.lines().any(|line| line.trim_end() == message) {
                Ok(())
            } else {
                Err(format!("stderr {:?}", clip(&filter_noise(&o.stderr), 2000)))
            }
        })
    }

    /// Non-zero exit code and stderr containing `text`.
    pub fn fails_containing(&mut self, text: &str) -> &mut Self {
        let text = text.to_string();
        self.check(format!("non-zero exit and stderr containing {text:?}"), move |o| {
            if o.code != 0 && o.stderr.contains(&text) {
                Ok(())
            } else {
                Err(format!("exit {}, stderr {:?}", o.code, clip(&filter_noise(&o.stderr), 2000)))
            }
        })
    }

    /// Stdout is exactly `bytes`.
    pub fn stdout_bytes(&mut self, bytes: Vec<u8>) -> &mut Self {
        self.check(format!("stdout of {} bytes equal to the local data", bytes.len()), move |o| {
            if o.stdout == bytes {
                Ok(())
            } else {
                Err(format!("different stdout: {}", first_difference(&bytes, &o.stdout)))
            }
        })
    }

    /// Stdout is exactly these lines.
    pub fn stdout_lines(&mut self, lines: &[&str]) -> &mut Self {
        let expected: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        self.check(format!("stdout lines {expected:?}"), move |o| {
            let seen: Vec<String> = o.stdout_lines().iter().map(|l| l.trim_end().to_string()).collect();
            if seen == expected {
                Ok(())
            } else {
                Err(format!("stdout lines {seen:?}"))
            }
        })
    }

    /// Stdout has a line that, split on whitespace, equals these fields.
    pub fn stdout_fields(&mut self, fields: &[&str]) -> &mut Self {
        let expected: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        self.check(format!("a stdout line with fields {expected:?}"), move |o| {
            let found = o
                .stdout_lines()
                .iter()
                .any(|line| line.split_whitespace().map(str::to_string).eq(expected.clone()));
            if found {
                Ok(())
            } else {
                Err(format!("stdout {:?}", clip(&o.stdout_text(), 2000)))
            }
        })
    }

    pub fn stdout_contains(&mut self, text: &str) -> &mut Self {
        let text = text.to_string();
        self.check(format!("stdout containing {text:?}"), move |o| {
            if o.stdout_text().contains(&text) {
                Ok(())
            } else {
                Err(format!("stdout {:?}", clip(&o.stdout_text(), 2000)))
            }
        })
    }

    /// After the batch, local file `path` holds exactly `bytes`.
    pub fn local_file(&mut self, path: &Path, bytes: Vec<u8>) -> &mut Self {
        let path = path.to_path_buf();
        self.check(
            format!("local file {} with {} bytes equal to the source", path.display(), bytes.len()),
            move |_| match std::fs::read(&path) {
                Ok(content) if content == bytes => Ok(()),
                Ok(content) => Err(format!("different content: {}", first_difference(&bytes, &content))),
                Err(e) => Err(format!("cannot read it: {e}")),
            },
        )
    }
}

/// A sequence of commands run in one JVM, checked afterwards.
pub struct Batch {
    name: String,
    steps: Vec<Step>,
}

impl Batch {
    pub fn new(name: &str) -> Batch {
        Batch { name: name.to_string(), steps: Vec::new() }
    }

    /// Adds `hadoop fs <args>`.
    pub fn fs(&mut self, args: &[&str]) -> &mut Step {
        self.steps.push(Step {
            args: args.iter().map(|s| s.to_string()).collect(),
            stdin: None,
            user: None,
            checks: Vec::new(),
        });
        self.steps.last_mut().expect("just pushed")
    }

    /// Runs every command; returns one message per failed expectation.
    /// Runs every command; returns one message per failed expectation.
    pub fn run(self, clients: &RealClients, cluster: &Cluster, classes: &Path, work: &Path) -> Vec<String> {
        let (outcomes, mut failures) = self.execute(clients, cluster, classes, work);
        for (index, (step, outcome)) in self.steps.iter().zip(outcomes).enumerate() {
            let command = self.command_line(index);
            let Some(outcome) = outcome else {
                failures.push(format!("{command}\n    did not run (the batch stopped before it)"));
                continue;
            };
            for (expectation, check) in &step.checks {
                if let Err(seen) = check(&outcome) {
                    failures.push(format!(
                        "{command}\n    expected: {expectation}\n    saw:      {seen}\n    (full result: {})",
                        outcome.describe()
                    ));
                }
            }
        }
        failures
    }

    /// `hadoop fs <args> [< stdin] [(as user)]` of step `index`, for messages.
    pub fn command_line(&self, index: usize) -> String {
        let step = &self.steps[index];
        format!(
            "hadoop fs {}{}{}",
            step.args.join(" "),
            step.stdin.as_ref().map(|p| format!(" < {}", p.display())).unwrap_or_default(),
            step.user.as_ref().map(|u| format!(" (as user {u})")).unwrap_or_default(),
        )
    }

    /// Runs every command in one JVM; returns each command's outcome (`None`: it did not
    /// run) and a message if the batch runner itself failed.
    pub fn execute(
        &self,
        clients: &RealClients,
        cluster: &Cluster,
        classes: &Path,
        work: &Path,
    ) -> (Vec<Option<Outcome>>, Vec<String>) {
        let script_path = work.join(format!("{}.script", self.name));
        let out_dir = work.join(format!("{}.out", self.name));
        let mut script = String::new();
        for step in &self.steps {
            let stdin = step.stdin.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            let fields: Vec<String> = [stdin, step.user.clone().unwrap_or_default()]
                .into_iter()
                .chain(step.args.iter().cloned())
                .collect();
            assert!(
                fields.iter().all(|f| !f.contains(['\t', '\n'])),
                "tabs and newlines cannot be passed: {fields:?}"
            );
            script.push_str(&fields.join("\t"));
            script.push('\n');
        }
        std::fs::write(&script_path, script).expect("write the batch script");
        let mut command = clients.hadoop(cluster);
        command.env("HADOOP_CLASSPATH", classes).arg("FsShellBatch").arg(&script_path).arg(&out_dir);
        let output = run(&mut command, None, Duration::from_secs(600));
        let mut failures = Vec::new();
        if !output.success() {
            failures.push(format!(
                "hadoop fs ({}): the batch runner failed\n{}",
                self.name,
                output.describe()
            ));
        }
        let outcomes = (0..self.steps.len())
            .map(|index| {
                let read = |ext: &str| std::fs::read(out_dir.join(format!("{index}.{ext}")));
                let (Ok(code), Ok(stdout), Ok(stderr)) = (read("rc"), read("out"), read("err")) else {
                    return None;
                };
                Some(Outcome {
                    code: String::from_utf8_lossy(&code).trim().parse().unwrap_or(-1),
                    stdout,
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
                })
            })
            .collect();
        (outcomes, failures)
    }
}

/// Seconds since the epoch → (year, month, day, hour, minute, second) in UTC.
pub fn utc_fields(epoch_seconds: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (epoch_seconds / 86_400) as i64;
    let rem = epoch_seconds % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, (rem / 3600) as u32, (rem % 3600 / 60) as u32, (rem % 60) as u32)
}

/// Whether `text` (`YYYY-MM-DD HH:MM[:SS]`, UTC) is within `slack_seconds` of now.
pub fn is_recent_utc(text: &str, slack_seconds: u64) -> bool {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let with_seconds = text.len() == "YYYY-MM-DD HH:MM:SS".len();
    let format = |t: u64| {
        let (y, mo, d, h, mi, s) = utc_fields(t);
        if with_seconds {
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
        } else {
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
        }
    };
    let (low, high) = (format(now.saturating_sub(slack_seconds)), format(now + slack_seconds));
    text.len() == low.len() && low.as_str() <= text && text <= high.as_str()
}

/// The user the Java client runs as (the OS login name).
pub fn login_user() -> String {
    let output = std::process::Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// HDFS's MD5-of-MD5-of-CRC32C file checksum of `data` stored in `block_size` blocks, as
/// `hadoop fs -checksum` prints it: (algorithm name, hex of the 28 checksum bytes).
///
/// The Java client digests the per-block MD5s from a `DataOutputBuffer` with
/// `MD5Hash.digest(buffer.getData())`, i.e. the whole backing array: the 16-byte MD5s
/// followed by zeros up to the buffer's capacity (32 bytes, doubled as needed). So the
/// file MD5 of a 1-block file covers 16 MD5 bytes and 16 zeros; of 2 and 4 blocks, none.
pub fn expected_file_checksum(data: &[u8], block_size: usize) -> (String, String) {
    use ringfs_common::checksum::{block_checksum_md5, ChecksumKind, DataChecksum, FileChecksum};
    let crc = DataChecksum::new(ChecksumKind::Crc32c, 512).expect("512-byte CRC32C");
    let block_md5s: Vec<u8> =
        data.chunks(block_size).flat_map(|block| block_checksum_md5(&crc.compute_vec(block))).collect();
    let mut capacity = 32;
    while capacity < block_md5s.len() {
        capacity = (capacity * 2).max(block_md5s.len());
    }
    let mut buffer = block_md5s.clone();
    buffer.resize(capacity, 0);
    let blocks = block_md5s.len() / 16;
    let crc_per_block = if blocks > 1 { (block_size / 512) as u64 } else { 0 };
    // block_checksum_md5 is a plain MD5 of its input.
    let checksum = FileChecksum {
        bytes_per_crc: 512,
        crc_per_block,
        md5: block_checksum_md5(&buffer),
        kind: ChecksumKind::Crc32c,
    };
    (checksum.algorithm_name(), checksum.to_hex())
}

#[test]
fn utc_formatting() {
    assert_eq!(utc_fields(0), (1970, 1, 1, 0, 0, 0));
    assert_eq!(utc_fields(951_782_400), (2000, 2, 29, 0, 0, 0));
    assert_eq!(utc_fields(1_700_000_000), (2023, 11, 14, 22, 13, 20));
    assert!(!is_recent_utc("1999-01-01 00:00", 600));
}

#[test]
fn file_checksum_like_the_java_client() {
    // Values printed by `hadoop fs -checksum` (Hadoop 3.5) for these contents.
    let text = b"hello ringfs\nhello hdfs\nthe quick brown fox\n";
    assert_eq!(
        expected_file_checksum(text, 1 << 20),
        (
            "MD5-of-0MD5-of-512CRC32C".to_string(),
            "000002000000000000000000937acbc7176eb873df850e74be28790e".to_string()
        )
    );
}
