//! Optional CPU profiles of the servers during a phase (`--perf`): `perf record` with the
//! software cpu-clock event (works in VMs without hardware counters), summarised with
//! `perf report` into a text file per phase, so a missed target comes with where the
//! CPU went.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Sampling frequency: enough samples in a one-second phase, little overhead.
const SAMPLE_HZ: &str = "999";
/// How long perf gets to write its file after SIGINT.
const PERF_STOP_WAIT: Duration = Duration::from_secs(30);

/// Is `perf record` usable here?
pub fn available() -> Result<()> {
    let output = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("run perf (apt-get install linux-perf)")?;
    if !output.status.success() {
        bail!("perf record does not work here: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// A running `perf record` attached to some processes.
pub struct Recording {
    child: Child,
    data: PathBuf,
    summary: PathBuf,
}

/// Starts sampling `pids` (with call graphs) into `<dir>/<name>.perf.data`.
pub fn start(dir: &Path, name: &str, pids: &[u32]) -> Result<Recording> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join(format!("{name}.perf.data"));
    let list = pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let child = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", SAMPLE_HZ, "-g", "-o"])
        .arg(&data)
        .args(["-p", &list])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start perf record")?;
    Ok(Recording { child, data, summary: dir.join(format!("{name}.txt")) })
}

impl Recording {
    /// Stops sampling and writes the top symbols (self time) next to the data file;
    /// returns the summary's path. The raw data is removed (it is large).
    pub fn finish(mut self) -> Result<PathBuf> {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let deadline = std::time::Instant::now() + PERF_STOP_WAIT;
        while self.child.try_wait()?.is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("perf record did not stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Where the time went by function (all threads together), then by thread name
        // (which shows io_uring's io-wq workers, xceiver threads, the runtime's workers).
        let mut summary = Vec::new();
        for sort in ["dso,symbol", "comm"] {
            let output = Command::new("perf")
                .args([
                    "report",
                    "--stdio",
                    "--no-children",
                    "--sort",
                    sort,
                    "--percent-limit",
                    "0.5",
                    "-g",
                    "none",
                    "-i",
                ])
                .arg(&self.data)
                .stderr(Stdio::null())
                .output()
                .context("run perf report")?;
            summary.extend_from_slice(&output.stdout);
        }
        std::fs::write(&self.summary, summary)?;
        let _ = std::fs::remove_file(&self.data);
        Ok(self.summary)
    }
}

/// The first `count` sample lines of a summary, for the report.
pub fn top_lines(summary: &Path, count: usize) -> Vec<String> {
    std::fs::read_to_string(summary)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('%'))
        .take(count)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}
