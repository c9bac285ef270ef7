//! The machine's own limits, measured by the harness in the same run so every ringfs figure
//! is also a ratio: loopback TCP (copying and sendfile), O_DIRECT sequential disk write and
//! read at a queue depth above one, page-cache read, and CRC32C over 512-byte chunks.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aligned_vec::{AVec, ConstAlign};
use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use ringfs_common::checksum::DataChecksum;
use serde::{Deserialize, Serialize};

use crate::progress::Progress;

/// O_DIRECT transfers must start at, and be sized in, multiples of the logical block size;
/// 4096 covers every device this runs on.
const DIRECT_IO_ALIGN: usize = 4096;
/// One O_DIRECT request: 1 MiB, as fio's `--bs=1M`.
const DISK_REQUEST_SIZE: usize = 1024 * 1024;
/// Bytes per write() in the copying TCP test: iperf3's default 128 KiB.
const TCP_WRITE_SIZE: usize = 128 * 1024;
/// Receive buffer of the TCP tests.
const TCP_READ_SIZE: usize = 1024 * 1024;
/// Bytes per sendfile() call in the zero-copy test.
const SENDFILE_CHUNK_SIZE: usize = 1024 * 1024;

/// Sizes and durations of the ceiling measurements.
#[derive(Debug, Clone)]
pub struct CeilingPlan {
    pub tcp_duration: Duration,
    /// Size of the O_DIRECT test file.
    pub disk_bytes: u64,
    /// Requests in flight during the O_DIRECT tests.
    pub disk_queue_depth: usize,
    /// Size of the page-cached file behind the sendfile and page-cache tests.
    pub cached_file_bytes: u64,
    pub crc_duration: Duration,
    /// Each ceiling is measured this many times and the best kept: a ceiling is what the
    /// machine can do, and a shared machine's noise only ever pulls it down.
    pub repeats: usize,
    /// Directory on the file system the datanodes store blocks on.
    pub dir: PathBuf,
}

/// One measured ceiling.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ceiling {
    pub bytes_per_sec: f64,
    pub bytes: u64,
    pub seconds: f64,
    pub method: String,
}

impl Ceiling {
    fn new(bytes: u64, elapsed: Duration, method: String) -> Ceiling {
        let seconds = elapsed.as_secs_f64();
        Ceiling { bytes_per_sec: bytes as f64 / seconds.max(1e-9), bytes, seconds, method }
    }
}

/// Every ceiling of one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ceilings {
    pub tcp_copy: Ceiling,
    pub tcp_sendfile: Ceiling,
    pub disk_write_direct: Ceiling,
    pub disk_read_direct: Ceiling,
    pub page_cache_read: Ceiling,
    pub crc32c_per_core: Ceiling,
    pub crc32c_all_cores: Ceiling,
}

impl Ceilings {
    /// The ceilings by name, for tables and plots.
    pub fn named(&self) -> Vec<(&'static str, &Ceiling)> {
        vec![
            ("tcp_copy", &self.tcp_copy),
            ("tcp_sendfile", &self.tcp_sendfile),
            ("disk_write_direct", &self.disk_write_direct),
            ("disk_read_direct", &self.disk_read_direct),
            ("page_cache_read", &self.page_cache_read),
            ("crc32c_per_core", &self.crc32c_per_core),
            ("crc32c_all_cores", &self.crc32c_all_cores),
        ]
    }

    pub fn get(&self, name: &str) -> Option<&Ceiling> {
        self.named().into_iter().find(|(n, _)| *n == name).map(|(_, c)| c)
    }
}

/// Measures every ceiling, one after the other (each wants the whole machine).
pub fn measure(plan: &CeilingPlan, progress: &Progress) -> Result<Ceilings> {
    std::fs::create_dir_all(&plan.dir).with_context(|| format!("create {}", plan.dir.display()))?;
    let cached = tempfile::NamedTempFile::new_in(&plan.dir).context("create page-cache test file")?;
    let repeats = plan.repeats.max(1);
    let bar = progress.spinner("ceilings: tcp copy");
    let tcp_copy = best_of(repeats, || tcp_copy(plan.tcp_duration))?;
    bar.set_message("ceilings: writing the page-cached file");
    fill_cached_file(cached.path(), plan.cached_file_bytes)?;
    bar.set_message("ceilings: tcp sendfile");
    let tcp_sendfile =
        best_of(repeats, || tcp_sendfile(cached.path(), plan.cached_file_bytes, plan.tcp_duration))?;
    bar.set_message("ceilings: page-cache read");
    let page_cache_read = best_of(repeats, || page_cache_read(cached.path(), plan.tcp_duration))?;
    drop(cached);
    bar.set_message("ceilings: O_DIRECT write");
    let direct = tempfile::NamedTempFile::new_in(&plan.dir).context("create O_DIRECT test file")?;
    let (bytes, depth) = (plan.disk_bytes, plan.disk_queue_depth);
    let disk_write_direct = best_of(repeats, || direct_io(direct.path(), bytes, depth, Direction::Write))?;
    bar.set_message("ceilings: O_DIRECT read");
    let disk_read_direct = best_of(repeats, || direct_io(direct.path(), bytes, depth, Direction::Read))?;
    drop(direct);
    bar.set_message("ceilings: crc32c");
    let crc32c_per_core = best_of(repeats, || Ok(crc32c(1, plan.crc_duration)))?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let crc32c_all_cores = best_of(repeats, || Ok(crc32c(cores, plan.crc_duration)))?;
    bar.finish_and_clear();
    Ok(Ceilings {
        tcp_copy,
        tcp_sendfile,
        disk_write_direct,
        disk_read_direct,
        page_cache_read,
        crc32c_per_core,
        crc32c_all_cores,
    })
}

/// The best of `repeats` measurements, its method noting every figure seen.
fn best_of(repeats: usize, mut measure: impl FnMut() -> Result<Ceiling>) -> Result<Ceiling> {
    let mut runs = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        runs.push(measure()?);
    }
    let seen: Vec<String> = runs.iter().map(|c| format!("{:.2}", c.bytes_per_sec / 1e9)).collect();
    let mut best =
        runs.into_iter().max_by(|a, b| a.bytes_per_sec.total_cmp(&b.bytes_per_sec)).expect("repeats >= 1");
    if seen.len() > 1 {
        best.method = format!("{}; best of {} GB/s", best.method, seen.join(", "));
    }
    Ok(best)
}

/// Reads everything from `stream`, returning the byte count and the time from the first
/// byte to end of stream.
fn drain(mut stream: TcpStream) -> std::io::Result<(u64, Duration)> {
    let mut buf = vec![0u8; TCP_READ_SIZE];
    let mut total = 0u64;
    let mut started: Option<Instant> = None;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        started.get_or_insert_with(Instant::now);
        total += n as u64;
    }
    Ok((total, started.map(|s| s.elapsed()).unwrap_or_default()))
}

/// Runs `send` against a loopback receiver and measures what arrives.
fn loopback(send: impl FnOnce(TcpStream) -> Result<()>) -> Result<(u64, Duration)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind loopback listener")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (stream, _) = listener.accept()?;
        drain(stream)
    });
    let stream = TcpStream::connect(addr).context("connect loopback")?;
    send(stream)?;
    let measured = receiver.join().map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
    Ok(measured)
}

/// One TCP stream over loopback, write() of 128 KiB buffers, as `iperf3 -c 127.0.0.1`.
fn tcp_copy(duration: Duration) -> Result<Ceiling> {
    let (bytes, elapsed) = loopback(|mut stream| {
        let buf = vec![0x5au8; TCP_WRITE_SIZE];
        let start = Instant::now();
        while start.elapsed() < duration {
            stream.write_all(&buf)?;
        }
        stream.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    })?;
    Ok(Ceiling::new(bytes, elapsed, "one loopback TCP stream, write() of 128 KiB, read() of 1 MiB".into()))
}

/// One TCP stream over loopback fed by sendfile() from a page-cached file, as `iperf3 -Z`.
fn tcp_sendfile(path: &Path, file_bytes: u64, duration: Duration) -> Result<Ceiling> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let (bytes, elapsed) = loopback(|stream| {
        let start = Instant::now();
        while start.elapsed() < duration {
            let mut offset: i64 = 0;
            while (offset as u64) < file_bytes {
                let count = SENDFILE_CHUNK_SIZE.min((file_bytes - offset as u64) as usize);
                let sent = nix::sys::sendfile::sendfile64(&stream, &file, Some(&mut offset), count)
                    .context("sendfile")?;
                if sent == 0 {
                    break;
                }
            }
        }
        stream.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    })?;
    Ok(Ceiling::new(
        bytes,
        elapsed,
        "one loopback TCP stream, sendfile() of 1 MiB from a page-cached file, read() of 1 MiB".into(),
    ))
}

fn fill_cached_file(path: &Path, bytes: u64) -> Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    let buf: Vec<u8> = (0..DISK_REQUEST_SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let mut written = 0u64;
    while written < bytes {
        let n = buf.len().min((bytes - written) as usize);
        file.write_all(&buf[..n])?;
        written += n as u64;
    }
    // Read it once so every page is resident before the timed runs.
    let mut sink = vec![0u8; DISK_REQUEST_SIZE];
    let mut reader = File::open(path)?;
    while reader.read(&mut sink)? > 0 {}
    Ok(())
}

/// read() of 1 MiB from a page-cached file, as `dd` of a cached file.
fn page_cache_read(path: &Path, duration: Duration) -> Result<Ceiling> {
    let mut buf = vec![0u8; DISK_REQUEST_SIZE];
    let mut bytes = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration {
        let mut file = File::open(path)?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
    }
    Ok(Ceiling::new(bytes, start.elapsed(), "read() of 1 MiB from a page-cached file".into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Write,
    Read,
}

/// Sequential O_DIRECT I/O in 1 MiB requests with `queue_depth` requests in flight (one
/// blocking thread per slot taking the next offset in order), as fio `--direct=1 --bs=1M`.
fn direct_io(path: &Path, bytes: u64, queue_depth: usize, direction: Direction) -> Result<Ceiling> {
    let requests = bytes / DISK_REQUEST_SIZE as u64;
    let bytes = requests * DISK_REQUEST_SIZE as u64;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlag::O_DIRECT.bits())
        .open(path)
        .with_context(|| format!("open {} with O_DIRECT", path.display()))?;
    if direction == Direction::Write {
        // Allocated up front so the timed writes do not extend the file, as fio lays out
        // its file first.
        nix::fcntl::posix_fallocate(file.as_raw_fd(), 0, bytes as i64).context("posix_fallocate")?;
    }
    let file = Arc::new(file);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..queue_depth.max(1))
        .map(|worker| {
            let file = Arc::clone(&file);
            let next = Arc::clone(&next);
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut buf: AVec<u8, ConstAlign<DIRECT_IO_ALIGN>> = AVec::new(DIRECT_IO_ALIGN);
                buf.resize(DISK_REQUEST_SIZE, (worker % 251) as u8);
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= requests {
                        return Ok(());
                    }
                    let offset = (index * DISK_REQUEST_SIZE as u64) as i64;
                    let done = match direction {
                        Direction::Write => nix::sys::uio::pwrite(&*file, &buf, offset),
                        Direction::Read => nix::sys::uio::pread(&*file, &mut buf, offset),
                    }
                    .map_err(std::io::Error::from)?;
                    if done != DISK_REQUEST_SIZE {
                        return Err(std::io::Error::other(format!("short O_DIRECT transfer: {done} bytes")));
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("O_DIRECT worker panicked"))?.context("O_DIRECT I/O")?;
    }
    if direction == Direction::Write {
        file.sync_data().context("fdatasync")?;
    }
    let what = match direction {
        Direction::Write => "write (fallocated file, fdatasync included)",
        Direction::Read => "read",
    };
    Ok(Ceiling::new(
        bytes,
        start.elapsed(),
        format!("sequential O_DIRECT {what}, 1 MiB requests, queue depth {queue_depth}"),
    ))
}

/// CRC32C over 512-byte chunks (ringfs_common::checksum), `threads` threads each over its
/// own 64 MiB buffer; the result is the aggregate rate.
fn crc32c(threads: usize, duration: Duration) -> Ceiling {
    const BUFFER_BYTES: usize = 64 * 1024 * 1024;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..BUFFER_BYTES).map(|i| (i * 7 + t) as u8).collect();
                let checksum = DataChecksum::CRC32C_512;
                let mut sums = vec![0u8; checksum.checksum_len(data.len())];
                let begin = Instant::now();
                let mut bytes = 0u64;
                while begin.elapsed() < duration {
                    checksum.compute(&data, &mut sums);
                    bytes += data.len() as u64;
                }
                std::hint::black_box(&sums);
                (bytes, begin.elapsed())
            })
        })
        .collect();
    let results: Vec<(u64, Duration)> = workers.into_iter().map(|w| w.join().expect("crc worker")).collect();
    let bytes: u64 = results.iter().map(|r| r.0).sum();
    // Aggregate rate: the sum of each thread's own rate (they ran concurrently).
    let rate: f64 = results.iter().map(|(b, d)| *b as f64 / d.as_secs_f64().max(1e-9)).sum();
    Ceiling {
        bytes_per_sec: rate,
        bytes,
        seconds: results.iter().map(|r| r.1.as_secs_f64()).fold(0.0, f64::max),
        method: format!(
            "DataChecksum::compute, CRC32C over 512-byte chunks of a 64 MiB buffer, {threads} thread(s)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ceiling_is_measured_and_positive() {
        let dir = tempfile::tempdir().unwrap();
        let plan = CeilingPlan {
            tcp_duration: Duration::from_millis(100),
            disk_bytes: 8 * 1024 * 1024,
            disk_queue_depth: 2,
            cached_file_bytes: 4 * 1024 * 1024,
            crc_duration: Duration::from_millis(50),
            repeats: 2,
            dir: dir.path().to_path_buf(),
        };
        let ceilings = measure(&plan, &Progress::hidden()).unwrap();
        for (name, ceiling) in ceilings.named() {
            assert!(ceiling.bytes > 0, "{name} moved no bytes");
            assert!(ceiling.bytes_per_sec > 0.0, "{name}");
        }
        assert_eq!(ceilings.disk_read_direct.bytes, 8 * 1024 * 1024);
    }
}
