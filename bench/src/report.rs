//! Turns results into the target checks of issue 6, the terminal table and `report.md`.

use std::fmt::Write as _;

use crate::results::{DataScenario, Results, TargetCheck};

/// Scenario names shared by the data path, the engine comparison and the targets.
pub mod scenario {
    pub const WRITE_1_R1: &str = "write_1x_r1";
    pub const WRITE_1_R3: &str = "write_1x_r3";
    pub const READ_HOT_1_NOVERIFY: &str = "read_hot_1x_r1_noverify";
    pub const READ_HOT_1_VERIFY: &str = "read_hot_1x_r1_verify";
    pub const READ_COLD_1: &str = "read_cold_1x_r1_noverify";
    pub const WRITE_MANY_R1: &str = "write_many_r1";
    pub const READ_HOT_MANY: &str = "read_hot_many_r1_noverify";
    pub const PREAD_64K: &str = "pread_64k_r1";
    /// The scenarios whose engines are compared against the efficiency target.
    pub const COMPARED: [&str; 4] = [READ_HOT_1_NOVERIFY, READ_HOT_MANY, WRITE_1_R1, WRITE_MANY_R1];
}

pub fn gb(bytes_per_sec: f64) -> String {
    format!("{:.2} GB/s", bytes_per_sec / 1e9)
}

fn pct(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

/// `>=` checks: met with margin, or missed by how much.
fn at_least(
    id: &str,
    description: &str,
    achieved: f64,
    target: f64,
    unit: &str,
    detail: String,
) -> TargetCheck {
    let met = achieved >= target;
    let shown = |v: f64| show(v, unit);
    let verdict = if met {
        format!("met: {} against at least {}", shown(achieved), shown(target))
    } else {
        let short = if target > 0.0 { (target - achieved) / target * 100.0 } else { 0.0 };
        format!("MISSED by {short:.1}%: {} against at least {}", shown(achieved), shown(target))
    };
    TargetCheck {
        id: id.into(),
        description: description.into(),
        achieved,
        target,
        unit: unit.into(),
        comparison: ">=".into(),
        met,
        verdict,
        detail,
    }
}

/// `<=` checks.
fn at_most(
    id: &str,
    description: &str,
    achieved: f64,
    target: f64,
    unit: &str,
    detail: String,
) -> TargetCheck {
    let met = achieved <= target;
    let shown = |v: f64| show(v, unit);
    let verdict = if met {
        format!("met: {} against at most {}", shown(achieved), shown(target))
    } else {
        if target > 0.0 {
            let over = (achieved - target) / target * 100.0;
            format!("MISSED by {over:.1}% over: {} against at most {}", shown(achieved), shown(target))
        } else {
            format!("MISSED: {} against {}", shown(achieved), shown(target))
        }
    };
    TargetCheck {
        id: id.into(),
        description: description.into(),
        achieved,
        target,
        unit: unit.into(),
        comparison: "<=".into(),
        met,
        verdict,
        detail,
    }
}

fn show(value: f64, unit: &str) -> String {
    match unit {
        "ratio" => format!("{value:.2}x"),
        "fraction" => pct(value),
        "ops/s" => format!("{value:.0} ops/s"),
        "ms" => format!("{value:.2} ms"),
        "s" => format!("{value:.2} s"),
        "bytes" => format!("{value:.0} B"),
        "errors" => format!("{value:.0} errors"),
        other => format!("{value:.3} {other}"),
    }
}

/// Median figures of one scenario on one engine over its rounds.
fn scenario_median<'a>(results: &'a Results, name: &str, engine: &str) -> Option<&'a DataScenario> {
    let mut runs: Vec<&DataScenario> =
        results.data_path.iter().filter(|s| s.name == name && s.engine == engine).collect();
    if runs.is_empty() {
        return None;
    }
    runs.sort_by(|a, b| a.bytes_per_sec.total_cmp(&b.bytes_per_sec));
    Some(runs[runs.len() / 2])
}

/// Evaluates every target of issue 6 that this run measured. Data-path targets are judged
/// on `primary` (the engine ringfs runs by default), the other engine in the detail.
pub fn check_targets(results: &Results, primary: &str) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    let others: Vec<&String> = results.meta.engines.iter().filter(|e| e.as_str() != primary).collect();
    let other_detail = |name: &str| -> String {
        others
            .iter()
            .filter_map(|e| scenario_median(results, name, e))
            .map(|s| {
                format!("{}: {} ({} of ceiling)", s.engine, gb(s.bytes_per_sec), pct(s.ratio_to_ceiling))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };

    if let Some(s) = scenario_median(results, scenario::READ_HOT_1_NOVERIFY, primary)
        .filter(|s| s.ceiling_bytes_per_sec > 0.0)
    {
        let mut detail = format!(
            "{} on {primary} against the zero-copy loopback ceiling {}",
            gb(s.bytes_per_sec),
            gb(s.ceiling_bytes_per_sec)
        );
        if let Some(v) = scenario_median(results, scenario::READ_HOT_1_VERIFY, primary) {
            let _ = write!(
                detail,
                "; with checksum verification on: {} ({})",
                gb(v.bytes_per_sec),
                pct(v.ratio_to_ceiling)
            );
        }
        let other = other_detail(scenario::READ_HOT_1_NOVERIFY);
        if !other.is_empty() {
            let _ = write!(detail, "; {other}");
        }
        checks.push(at_least(
            "hot_read_1_stream",
            "Hot read, one stream, replication 1, verification off: share of the zero-copy loopback ceiling",
            s.ratio_to_ceiling,
            0.75,
            "fraction",
            detail,
        ));
    }
    if let Some(s) =
        scenario_median(results, scenario::READ_COLD_1, primary).filter(|s| s.ceiling_bytes_per_sec > 0.0)
    {
        checks.push(at_least(
            "cold_read",
            "Cold read (block files evicted): share of the O_DIRECT sequential read ceiling",
            s.ratio_to_ceiling,
            0.90,
            "fraction",
            format!(
                "{} against {}; {}",
                gb(s.bytes_per_sec),
                gb(s.ceiling_bytes_per_sec),
                other_detail(scenario::READ_COLD_1)
            ),
        ));
    }
    let write_r1 = scenario_median(results, scenario::WRITE_1_R1, primary);
    // Without the ceilings section there is nothing to take a share of.
    if let Some(s) = write_r1.filter(|s| s.ceiling_bytes_per_sec > 0.0) {
        checks.push(at_least(
            "write_r1",
            "Write, replication 1: share of min(loopback copy ceiling, O_DIRECT write ceiling)",
            s.ratio_to_ceiling,
            0.70,
            "fraction",
            format!(
                "{} against {}; {}",
                gb(s.bytes_per_sec),
                gb(s.ceiling_bytes_per_sec),
                other_detail(scenario::WRITE_1_R1)
            ),
        ));
    }
    if let (Some(r1), Some(r3)) = (write_r1, scenario_median(results, scenario::WRITE_1_R3, primary)) {
        checks.push(at_least(
            "write_r3",
            "Write, replication 3 across three local datanodes: share of the replication-1 figure",
            r3.bytes_per_sec / r1.bytes_per_sec.max(1e-9),
            0.5,
            "fraction",
            format!("{} against {} at replication 1", gb(r3.bytes_per_sec), gb(r1.bytes_per_sec)),
        ));
    }
    for comparison in &results.engine_comparison {
        if !scenario::COMPARED.contains(&comparison.scenario.as_str()) {
            continue;
        }
        let detail = format!(
            "uring {} at {:.2} GB per datanode CPU-second; threads {} at {:.2} GB per CPU-second ({} round(s), medians)",
            gb(comparison.uring_bytes_per_sec),
            comparison.uring_bytes_per_cpu_second / 1e9,
            gb(comparison.threads_bytes_per_sec),
            comparison.threads_bytes_per_cpu_second / 1e9,
            comparison.rounds
        );
        checks.push(at_least(
            &format!("uring_efficiency_{}", comparison.scenario),
            &format!("io_uring vs threads, bytes per datanode CPU-second, {}", comparison.scenario),
            comparison.efficiency_ratio,
            1.3,
            "ratio",
            detail.clone(),
        ));
        checks.push(at_least(
            &format!("uring_throughput_{}", comparison.scenario),
            &format!("io_uring vs threads, bytes per second (never fewer), {}", comparison.scenario),
            comparison.throughput_ratio,
            1.0,
            "ratio",
            detail,
        ));
    }
    if let Some(c) = results.connections.iter().find(|c| c.engine == primary) {
        let others: Vec<String> = results
            .connections
            .iter()
            .filter(|o| o.engine != primary)
            .map(|o| format!("{}: p99 {:.2} ms, {} errors", o.engine, o.latency.p99_ms, o.errors))
            .collect();
        let paced = c.paced_latency.as_ref();
        let detail = format!(
            "{} busy + {} idle connections; paced at {:.0} reads/s (half the closed-loop rate): {} reads of \
             {} KiB, p50 {:.2} ms, max {:.2} ms; closed loop (every connection reading back to back, so \
             latency = connections / throughput): {:.0} reads/s, p99 {:.2} ms; {} connection attempts \
             dropped by a full accept queue (each costs the client a 1 s SYN retry); {}",
            c.connections,
            c.idle_connections,
            c.paced_offered_reads_per_sec,
            c.paced_reads,
            c.read_bytes / 1024,
            paced.map_or(f64::NAN, |l| l.p50_ms),
            paced.map_or(f64::NAN, |l| l.max_ms),
            c.reads_per_sec,
            c.latency.p99_ms,
            c.listen_overflows,
            others.join("; ")
        );
        checks.push(at_most(
            "connections_p99",
            "1,000 concurrent connections doing 64 KiB random reads: p99 latency (paced)",
            paced.map_or(f64::INFINITY, |l| l.p99_ms),
            10.0,
            "ms",
            detail.clone(),
        ));
        checks.push(at_most(
            "connections_errors",
            "1,000 concurrent connections doing 64 KiB random reads: errors",
            (c.errors + c.paced_errors) as f64,
            0.0,
            "errors",
            if c.error_samples.is_empty() {
                detail
            } else {
                format!("{detail}; first errors: {}", c.error_samples.join(" | "))
            },
        ));
    }
    for (op, target, id) in
        [("getFileInfo", 50_000.0, "nn_getfileinfo"), ("create+complete", 10_000.0, "nn_create")]
    {
        if let Some(m) = results.metadata.iter().find(|m| m.op == op) {
            checks.push(at_least(
                id,
                &format!("Namenode {op} with {} concurrent clients, edit log fsynced", m.clients),
                m.ops_per_sec,
                target,
                "ops/s",
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms, {} errors, namenode CPU {:.1} s over {:.1} s",
                    m.latency.p50_ms, m.latency.p99_ms, m.errors, m.namenode_cpu_seconds, m.seconds
                ),
            ));
        }
    }
    let below_scale = |check: &mut TargetCheck, measured: u64, scale: u64, what: &str| {
        if measured < scale {
            check.verdict.push_str(&format!(
                " (measured at {measured} {what}, below the target's {scale}: indicative only; run `full`)"
            ));
        }
    };
    if let Some(m) = &results.memory {
        checks.push(at_most(
            "nn_memory_per_file",
            "Namenode resident memory per single-block file (target stated at 1M files)",
            m.bytes_per_file,
            200.0,
            "bytes",
            format!(
                "measured at {} {} files (RSS {:.1} -> {:.1} MiB); empty files: {:.0} B each over {}",
                m.files,
                m.file_kind,
                m.rss_before_bytes as f64 / 1048576.0,
                m.rss_after_bytes as f64 / 1048576.0,
                m.empty_bytes_per_file,
                m.empty_files
            ),
        ));
        if let Some(check) = checks.last_mut() {
            below_scale(check, m.files, 1_000_000, "files");
        }
    }
    for interop in &results.interop {
        if let Some(ratio) = interop.ratio_to_local {
            checks.push(at_least(
                &format!("java_{}", interop.op.trim_start_matches('-')),
                &format!(
                    "Java client {} of {} MiB: share of the same client's local-file copy",
                    interop.op,
                    interop.bytes >> 20
                ),
                ratio,
                0.8,
                "fraction",
                format!(
                    "{} against {} to/from file:// (JVM start included in both)",
                    gb(interop.bytes_per_sec),
                    gb(interop.local_bytes_per_sec.unwrap_or(0.0))
                ),
            ));
        }
    }
    if let Some(n) = &results.restarts.namenode {
        checks.push(at_most(
            "nn_restart",
            "Namenode restart to serving (target stated with 1M files)",
            n.seconds_to_serving,
            5.0,
            "s",
            format!(
                "with {} files; READY line after {:.2} s; stopped with {}",
                n.files, n.seconds_to_ready_line, n.stop
            ),
        ));
        if let Some(check) = checks.last_mut() {
            below_scale(check, n.files, 1_000_000, "files");
        }
    }
    if let Some(d) = &results.restarts.datanode {
        checks.push(at_most(
            "dn_restart",
            "Datanode restart to its first full block report (target stated with 100,000 replicas)",
            d.seconds_to_first_block_report,
            3.0,
            "s",
            format!(
                "with {} replicas; READY line after {:.2} s; observed by {}",
                d.replicas, d.seconds_to_ready_line, d.method
            ),
        ));
        if let Some(check) = checks.last_mut() {
            below_scale(check, d.replicas, 100_000, "replicas");
        }
    }
    checks
}

/// Rows of text, columns padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    out.push('\n');
    for row in rows {
        out.push_str(line(row.clone()).trim_end());
        out.push('\n');
    }
    out
}

/// Markdown table.
fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}|\n",
        header.join(" | "),
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

/// Every section as (title, header, rows), shared by the terminal and markdown renderings.
/// A titled table: (title, header, rows).
type Section = (String, Vec<&'static str>, Vec<Vec<String>>);

fn sections(results: &Results) -> Vec<Section> {
    let mut out = Vec::new();
    if let Some(c) = &results.ceilings {
        let rows = c
            .named()
            .into_iter()
            .map(|(name, c)| vec![name.to_string(), gb(c.bytes_per_sec), c.method.clone()])
            .collect();
        out.push((
            "Machine ceilings (measured in this run)".to_string(),
            vec!["ceiling", "rate", "method"],
            rows,
        ));
    }
    if !results.data_path.is_empty() {
        let rows = results
            .data_path
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.engine.clone(),
                    s.round.to_string(),
                    format!("{}x{}MiB", s.files, s.file_bytes >> 20),
                    gb(s.bytes_per_sec),
                    format!("{} of {}", pct(s.ratio_to_ceiling), s.ceiling),
                    format!("{:.2}/{:.2}/{:.2}", s.latency.p50_ms, s.latency.p99_ms, s.latency.max_ms),
                    format!("{:.2}", s.datanode_cpu_seconds),
                    format!("{:.2}", s.client_cpu_seconds),
                    format!("{:.2}", s.bytes_per_datanode_cpu_second / 1e9),
                    s.errors.to_string(),
                ]
            })
            .collect();
        out.push((
            "Data path (latency per client call of the I/O size; CPU in seconds)".to_string(),
            vec![
                "scenario",
                "engine",
                "round",
                "files",
                "throughput",
                "vs ceiling",
                "p50/p99/max ms",
                "DN CPU",
                "client CPU",
                "GB/DN-CPU-s",
                "errors",
            ],
            rows,
        ));
    }
    if !results.engine_comparison.is_empty() {
        let rows = results
            .engine_comparison
            .iter()
            .map(|c| {
                vec![
                    c.scenario.clone(),
                    gb(c.uring_bytes_per_sec),
                    gb(c.threads_bytes_per_sec),
                    format!("{:.2}x", c.throughput_ratio),
                    format!("{:.2}", c.uring_bytes_per_cpu_second / 1e9),
                    format!("{:.2}", c.threads_bytes_per_cpu_second / 1e9),
                    format!("{:.2}x", c.efficiency_ratio),
                ]
            })
            .collect();
        out.push((
            "io_uring against threads (medians over interleaved rounds)".to_string(),
            vec![
                "scenario",
                "uring",
                "threads",
                "throughput ratio",
                "uring GB/CPU-s",
                "threads GB/CPU-s",
                "efficiency ratio",
            ],
            rows,
        ));
    }
    if !results.connections.is_empty() {
        let rows = results
            .connections
            .iter()
            .map(|c| {
                vec![
                    c.engine.clone(),
                    format!("{}+{} idle", c.connections, c.idle_connections),
                    c.reads.to_string(),
                    format!("{:.0}", c.reads_per_sec),
                    format!(
                        "{:.2}/{:.2}/{:.2}/{:.2}",
                        c.latency.p50_ms, c.latency.p90_ms, c.latency.p99_ms, c.latency.max_ms
                    ),
                    format!("{:.0}", c.paced_offered_reads_per_sec),
                    c.paced_latency.as_ref().map_or("-".to_string(), |l| {
                        format!("{:.2}/{:.2}/{:.2}/{:.2}", l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms)
                    }),
                    (c.errors + c.paced_errors).to_string(),
                    c.listen_overflows.to_string(),
                ]
            })
            .collect();
        out.push((
            "Concurrent connections, 64 KiB random reads".to_string(),
            vec![
                "engine",
                "connections",
                "reads",
                "closed-loop reads/s",
                "closed-loop p50/p90/p99/max ms",
                "paced reads/s",
                "paced p50/p90/p99/max ms",
                "errors",
                "listen overflows",
            ],
            rows,
        ));
    }
    if !results.metadata.is_empty() {
        let rows = results
            .metadata
            .iter()
            .map(|m| {
                vec![
                    m.op.clone(),
                    m.clients.to_string(),
                    m.ops.to_string(),
                    format!("{:.0}", m.ops_per_sec),
                    format!(
                        "{:.2}/{:.2}/{:.2}/{:.2}",
                        m.latency.p50_ms, m.latency.p90_ms, m.latency.p99_ms, m.latency.max_ms
                    ),
                    format!("{:.2}", m.namenode_cpu_seconds),
                    m.errors.to_string(),
                ]
            })
            .collect();
        out.push((
            "Namenode metadata operations over RPC".to_string(),
            vec!["op", "clients", "ops", "ops/s", "p50/p90/p99/max ms", "NN CPU s", "errors"],
            rows,
        ));
    }
    let mut misc = Vec::new();
    if let Some(m) = &results.memory {
        misc.push(vec![
            "namenode RSS per single-block file".into(),
            format!("{:.0} B", m.bytes_per_file),
            format!("{} files, created in {:.1} s", m.files, m.seconds_to_create),
        ]);
        misc.push(vec![
            "namenode RSS per empty file".into(),
            format!("{:.0} B", m.empty_bytes_per_file),
            format!("{} files", m.empty_files),
        ]);
    }
    if let Some(n) = &results.restarts.namenode {
        misc.push(vec![
            "namenode restart to serving".into(),
            format!("{:.2} s", n.seconds_to_serving),
            format!("{} files; READY line at {:.2} s", n.files, n.seconds_to_ready_line),
        ]);
    }
    if let Some(d) = &results.restarts.datanode {
        misc.push(vec![
            "datanode restart to first full block report".into(),
            format!("{:.2} s", d.seconds_to_first_block_report),
            format!("{} replicas; READY line at {:.2} s", d.replicas, d.seconds_to_ready_line),
        ]);
    }
    for i in &results.interop {
        misc.push(vec![
            format!("{} {}", i.client, i.op),
            gb(i.bytes_per_sec),
            match (i.local_bytes_per_sec, i.ratio_to_local) {
                (Some(l), Some(r)) => {
                    format!("{} MiB; local file:// {}; ratio {}", i.bytes >> 20, gb(l), pct(r))
                }
                _ => format!("{} MiB in {:.2} s", i.bytes >> 20, i.seconds),
            },
        ]);
    }
    if !misc.is_empty() {
        out.push(("Memory, restarts, real clients".to_string(), vec!["measure", "figure", "detail"], misc));
    }
    if !results.targets.is_empty() {
        let rows = results
            .targets
            .iter()
            .map(|t| vec![if t.met { "ok".into() } else { "MISS".into() }, t.id.clone(), t.verdict.clone()])
            .collect();
        out.push(("Targets of issue 6".to_string(), vec!["", "target", "verdict"], rows));
    }
    if !results.skipped.is_empty() {
        let rows = results.skipped.iter().map(|s| vec![s.section.clone(), s.reason.clone()]).collect();
        out.push(("Skipped".to_string(), vec!["section", "reason"], rows));
    }
    out
}

pub fn terminal(results: &Results) -> String {
    let mut out = format!(
        "ringfs-bench {} on {} ({} CPUs, kernel {}), {:.0} s\n",
        results.meta.mode,
        results.meta.hostname,
        results.meta.cpus,
        results.meta.kernel,
        results.meta.duration_seconds
    );
    for (title, header, rows) in sections(results) {
        let _ = write!(out, "\n== {title}\n{}", table(&header, &rows));
    }
    out
}

/// Where the CPU went in a scenario: whether the two cores were the limit.
fn cpu_note(s: &DataScenario, cpus: usize) -> String {
    let busy = (s.datanode_cpu_seconds + s.client_cpu_seconds) / s.seconds.max(1e-9);
    let saturated = busy >= 0.85 * cpus as f64;
    format!(
        "{}: {:.2} of {cpus} cores busy (datanodes {:.2}, client {:.2}){}",
        s.engine,
        busy,
        s.datanode_cpu_seconds / s.seconds.max(1e-9),
        s.client_cpu_seconds / s.seconds.max(1e-9),
        if saturated { ": CPU-bound" } else { "" }
    )
}

pub fn markdown(results: &Results) -> String {
    let m = &results.meta;
    let mut out = format!(
        "# ringfs-bench report ({})\n\nStarted {} on `{}`: {} CPUs, {:.1} GiB, kernel {}, git {}. Cluster: {}. Engines: {}. \
         Took {:.0} s.\n\nEvery figure is set against a ceiling measured by the harness in the same run; ratios, not \
         bare numbers, are what compare across machines.\n",
        m.mode,
        m.started_at,
        m.hostname,
        m.cpus,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        m.kernel,
        m.git_revision,
        m.cluster,
        m.engines.join(", "),
        m.duration_seconds
    );
    if !results.targets.is_empty() {
        let met = results.targets.iter().filter(|t| t.met).count();
        let _ = writeln!(out, "\n**Targets: {met} of {} met.**\n", results.targets.len());
        let rows: Vec<Vec<String>> = results
            .targets
            .iter()
            .map(|t| {
                vec![
                    if t.met { "met".into() } else { "**missed**".into() },
                    t.description.clone(),
                    t.verdict.clone(),
                    t.detail.clone(),
                ]
            })
            .collect();
        out.push_str(&md_table(&["", "target", "achieved", "detail"], &rows));
    }
    for (title, header, rows) in sections(results) {
        if title.starts_with("Targets") {
            continue;
        }
        let _ = write!(out, "\n## {title}\n\n{}", md_table(&header, &rows));
    }
    if !results.data_path.is_empty() {
        out.push_str("\n## Where the time went (CPU accounting per scenario)\n\n");
        out.push_str(
            "Datanode CPU is read from /proc/<pid>/stat of every datanode process, client CPU from the \
             harness's own process. A scenario whose cores are all busy is CPU-bound on this machine; \
             one that is not is bound by round trips, the disk, or waiting.\n\n",
        );
        for s in &results.data_path {
            let _ = writeln!(out, "- `{}` round {}: {}", s.name, s.round, cpu_note(s, m.cpus));
        }
    }
    let profiled: Vec<&DataScenario> = results.data_path.iter().filter(|s| s.profile.is_some()).collect();
    if !profiled.is_empty() || results.metadata_profile.is_some() {
        out.push_str("\n## Profiles (perf cpu-clock samples of the servers, self time)\n");
        for s in profiled {
            let p = s.profile.as_ref().expect("filtered");
            let _ = write!(
                out,
                "\n`{}` [{}] round {} ({}):\n\n```text\n{}\n```\n",
                s.name,
                s.engine,
                s.round,
                p.file,
                p.top.join("\n")
            );
        }
        if let Some(p) = &results.metadata_profile {
            let _ = write!(
                out,
                "\nnamenode over the metadata section ({}):\n\n```text\n{}\n```\n",
                p.file,
                p.top.join("\n")
            );
        }
    }
    out.push_str("\n## Plots\n\n- `throughput.svg`: every data-path scenario per engine, with its ceiling.\n- `latency_cdf_data.svg`, `latency_cdf_metadata.svg`: latency CDFs.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_say_by_how_much() {
        let miss = at_least("x", "x", 0.6, 0.75, "fraction", String::new());
        assert!(!miss.met);
        assert!(miss.verdict.contains("MISSED by 20.0%"), "{}", miss.verdict);
        let ok = at_most("y", "y", 4.0, 10.0, "ms", String::new());
        assert!(ok.met);
        let over = at_most("z", "z", 15.0, 10.0, "ms", String::new());
        assert!(over.verdict.contains("50.0% over"), "{}", over.verdict);
    }

    #[test]
    fn tables_align() {
        let t = table(&["a", "bb"], &[vec!["long cell".into(), "x".into()]]);
        assert!(t.lines().nth(1).unwrap().starts_with("---------"));
    }
}
