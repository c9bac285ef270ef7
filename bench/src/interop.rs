//! The real clients, when scripts/install-clients.sh has installed them: the Java
//! `hadoop fs -put`/`-get` into ringfs against the same client copying to `file://`, and
//! hdfs-native (Python) reading the same file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::results::InteropResult;

/// `~/.cache/ringfs-deps/env.sh` (or under `$RINGFS_DEPS`), when the clients are installed.
pub fn client_env() -> Option<PathBuf> {
    let root = std::env::var_os("RINGFS_DEPS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("ringfs-deps")))?;
    let env = root.join("env.sh");
    env.is_file().then_some(env)
}

/// Runs a shell command with the clients' environment, killed after `limit`; returns its
/// wall time.
fn timed(env: &Path, script: &str, limit: Duration) -> Result<f64> {
    let start = Instant::now();
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(". '{}' && timeout {} {script}", env.display(), limit.as_secs().max(1)))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {script}"))?;
    let seconds = start.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "`{script}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(seconds)
}

fn result(client: &str, op: &str, bytes: u64, seconds: f64, local_seconds: Option<f64>) -> InteropResult {
    let bytes_per_sec = bytes as f64 / seconds.max(1e-9);
    let local_bytes_per_sec = local_seconds.map(|s| bytes as f64 / s.max(1e-9));
    InteropResult {
        client: client.to_string(),
        op: op.to_string(),
        bytes,
        seconds,
        bytes_per_sec,
        local_bytes_per_sec,
        ratio_to_local: local_bytes_per_sec.map(|l| bytes_per_sec / l),
    }
}

/// Java put/get into ringfs and to file://, then hdfs-native reads of the put file.
pub fn run(env: &Path, uri: &str, scratch: &Path, bytes: u64, limit: Duration) -> Result<Vec<InteropResult>> {
    std::fs::create_dir_all(scratch)?;
    let source = scratch.join("interop-source.bin");
    {
        let mut file = std::fs::File::create(&source)?;
        let block: Vec<u8> =
            (0..1024 * 1024).map(|i: usize| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let mut written = 0;
        while written < bytes {
            let n = (bytes - written).min(block.len() as u64) as usize;
            file.write_all(&block[..n])?;
            written += n as u64;
        }
        file.sync_all()?;
    }
    let remote = format!("{uri}/bench/interop/java.bin");
    let local_copy = scratch.join("interop-local-copy.bin");
    let got = scratch.join("interop-got.bin");
    let got_local = scratch.join("interop-got-local.bin");
    let hadoop = "hadoop fs -D dfs.replication=1";
    let src = source.display();
    let mut results = Vec::new();

    timed(env, &format!("{hadoop} -mkdir -p {uri}/bench/interop"), limit)?;
    let put = timed(env, &format!("{hadoop} -put -f '{src}' {remote}"), limit)?;
    let put_local =
        timed(env, &format!("{hadoop} -put -f '{src}' 'file://{}'", local_copy.display()), limit)?;
    results.push(result("java hadoop fs", "-put", bytes, put, Some(put_local)));

    let _ = std::fs::remove_file(&got);
    let _ = std::fs::remove_file(&got_local);
    let get = timed(env, &format!("{hadoop} -get {remote} '{}'", got.display()), limit)?;
    let get_local = timed(env, &format!("{hadoop} -get 'file://{src}' '{}'", got_local.display()), limit)?;
    if std::fs::metadata(&got)?.len() != bytes {
        bail!("hadoop fs -get returned {} bytes, expected {bytes}", std::fs::metadata(&got)?.len());
    }
    results.push(result("java hadoop fs", "-get", bytes, get, Some(get_local)));

    // hdfs-native: the time of the read alone, measured inside Python.
    let script = format!(
        "import time; from hdfs_native import Client\n\
         c = Client('{uri}')\n\
         t = time.perf_counter(); n = 0\n\
         f = c.read('/bench/interop/java.bin')\n\
         while True:\n    b = f.read(8 << 20)\n    if not b: break\n    n += len(b)\n\
         print(n, time.perf_counter() - t)\n"
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(
            ". '{}' && timeout {} python -c \"$RINGFS_BENCH_PY\"",
            env.display(),
            limit.as_secs().max(1)
        ))
        .env("RINGFS_BENCH_PY", script)
        .stdin(Stdio::null())
        .output()
        .context("run hdfs-native")?;
    if output.status.success() {
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = text.split_whitespace();
        let n: u64 = fields.next().and_then(|f| f.parse().ok()).context("hdfs-native byte count")?;
        let seconds: f64 = fields.next().and_then(|f| f.parse().ok()).context("hdfs-native seconds")?;
        if n != bytes {
            bail!("hdfs-native read {n} bytes, expected {bytes}");
        }
        results.push(result("hdfs-native (python)", "read", n, seconds, None));
    } else {
        bail!(
            "hdfs-native read failed: {}",
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        );
    }
    for path in [&source, &local_copy, &got, &got_local] {
        let _ = std::fs::remove_file(path);
    }
    Ok(results)
}
