//! Latency histograms and their summaries, and the per-process counters read from /proc.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram tracks: one minute, in microseconds. Slower operations are
/// clamped to it (and still counted), so one stuck call cannot break a run.
const LATENCY_MAX_US: u64 = 60_000_000;

/// Points kept per latency CDF for the plots.
const CDF_POINTS: usize = 120;

/// A latency histogram in microseconds.
#[derive(Clone, Debug)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        Latency {
            histogram: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds"),
        }
    }

    pub fn record(&mut self, elapsed: Duration) {
        let us = (elapsed.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        self.histogram.record(us).expect("value within bounds after clamping");
    }

    pub fn merge(&mut self, other: &Latency) {
        self.histogram.add(&other.histogram).expect("histograms share bounds");
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        // Quantiles spaced evenly in "number of nines" so the tail is visible on a plot.
        let cdf = (0..CDF_POINTS)
            .map(|i| {
                let nines = 4.0 * i as f64 / (CDF_POINTS - 1) as f64;
                let quantile = 1.0 - 10f64.powf(-nines);
                let quantile = quantile.min(1.0);
                (ms(h.value_at_quantile(quantile)), quantile)
            })
            .collect();
        LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            cdf,
        }
    }
}

/// Percentiles of one operation's latency, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// (latency ms, quantile) pairs, for the CDF plots.
    pub cdf: Vec<(f64, f64)>,
}

/// CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat.
pub fn process_cpu_seconds(pid: u32) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let parse = |i: usize| -> std::io::Result<u64> {
        fields.get(i).and_then(|f| f.parse().ok()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("/proc/{pid}/stat field {i}"))
        })
    };
    let ticks = parse(11)? + parse(12)?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// Resident set size of a process in bytes, from /proc/<pid>/statm.
pub fn process_rss_bytes(pid: u32) -> std::io::Result<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 =
        statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("/proc/{pid}/statm"))
        })?;
    Ok(pages * page_size())
}

/// Sum of the CPU seconds of several processes; processes that are gone count zero.
pub fn total_cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| process_cpu_seconds(*pid).unwrap_or(0.0)).sum()
}

fn clock_ticks_per_second() -> f64 {
    use nix::unistd::{sysconf, SysconfVar};
    sysconf(SysconfVar::CLK_TCK).ok().flatten().map(|t| t as f64).unwrap_or(100.0)
}

fn page_size() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    sysconf(SysconfVar::PAGE_SIZE).ok().flatten().map(|p| p as u64).unwrap_or(4096)
}

/// CPU seconds of this process's own threads (the client side of a benchmark).
pub fn own_cpu_seconds() -> f64 {
    process_cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Kernel TCP counters (`TcpExt` in /proc/net/netstat): (ListenOverflows, ListenDrops).
/// They count connection attempts a listener's full accept queue turned away, which
/// clients then retry after a one-second SYN timeout.
pub fn listen_overflows() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return (0, 0) };
    let field = |wanted: &str| -> u64 {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == wanted)
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0)
    };
    (field("ListenOverflows"), field("ListenDrops"))
}

/// Median of a non-empty list of samples.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_orders_percentiles() {
        let mut latency = Latency::new();
        for us in 1..=10_000u64 {
            latency.record(Duration::from_micros(us));
        }
        let s = latency.summary();
        assert_eq!(s.count, 10_000);
        assert!(s.p50_ms <= s.p90_ms && s.p90_ms <= s.p99_ms && s.p99_ms <= s.p999_ms);
        assert!(s.p999_ms <= s.max_ms);
        assert!((s.p50_ms - 5.0).abs() < 0.1, "p50 {}", s.p50_ms);
        assert_eq!(s.cdf.len(), CDF_POINTS);
        assert!(s.cdf.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn own_process_counters_are_readable() {
        assert!(process_rss_bytes(std::process::id()).unwrap() > 0);
        assert!(process_cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
