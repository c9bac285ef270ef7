//! One benchmark run from start to finish: ceilings, clusters, every section, outputs.
//! A section that cannot run is recorded in `skipped` with its reason; the run goes on.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::ValueEnum;
use ringfs_client::DfsClient;
use ringfs_common::proto::hdfs::SafeModeActionProto;

use crate::ceilings::{self, CeilingPlan, Ceilings};
use crate::cluster::{self, Cluster, SpawnSpec};
use crate::dfsio::{self, Measured};
use crate::plan::{Mode, Plan};
use crate::progress::Progress;
use crate::report::{self, scenario};
use crate::results::{
    ConnectionsResult, DataScenario, DatanodeRestart, EngineComparison, MemoryResult, NamenodeRestart,
    Results,
};
use crate::stats::{median, own_cpu_seconds, process_rss_bytes, total_cpu_seconds};
use crate::{interop, metadata, plots, restarts};

/// Datanodes per spawned cluster: replication 3 needs three.
const DATANODES: usize = 3;
/// Heartbeat interval of spawned clusters: registration and restarts are seen sooner.
const HEARTBEAT_INTERVAL_S: &str = "1";
/// How long the cluster gets to be whole again after a namenode restart.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// Resolution of /proc CPU accounting (one clock tick): a phase that used less is
/// counted as one tick, so bytes per CPU-second stays finite.
const CPU_TICK_S: f64 = 0.01;
/// Lines of each profile quoted in the report.
const PROFILE_TOP_LINES: usize = 12;
/// Shortest time a restart is given, whatever the plan's phase limit.
const RESTART_LIMIT_MIN: Duration = Duration::from_secs(120);
/// Concurrent writers of the single-block files of the memory figure.
const MEMORY_WRITERS: usize = 64;

/// Parts of a run that can be chosen with `--only` / `--skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    Ceilings,
    Data,
    Connections,
    Metadata,
    Memory,
    Restarts,
    Interop,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub plan: Plan,
    /// `hdfs://HOST:PORT` of a running cluster; `None` spawns clusters.
    pub namenode: Option<String>,
    pub out: PathBuf,
    pub ringfs_bin: Option<PathBuf>,
    /// Where spawned clusters and ceiling test files live (the datanodes' file system).
    pub scratch: PathBuf,
    pub engines: Vec<String>,
    pub sections: Vec<Section>,
    pub progress: bool,
    /// Record the servers with `perf` during each phase.
    pub perf: bool,
    pub command_line: Vec<String>,
}

impl Options {
    fn wants(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }
}

/// One engine's cluster and its clients.
struct Target {
    engine: String,
    cluster: Cluster,
    verify: DfsClient,
    noverify: DfsClient,
}

impl Target {
    fn data_dirs(&self) -> Vec<PathBuf> {
        (0..self.cluster.datanode_pids.len()).filter_map(|i| self.cluster.data_dir(i)).collect()
    }
}

/// When the run began, for the elapsed time on log lines.
static RUN_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// One line of what just finished, with the run's elapsed time.
fn log(progress: &Progress, line: &str) {
    let elapsed = RUN_START.get().map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
    progress.println(&format!("[{elapsed:7.1}s] {line}"));
}

/// Runs everything the options ask for and writes the outputs; returns the results.
pub fn run(options: &Options) -> Result<Results> {
    let started = *RUN_START.get_or_init(Instant::now);
    remove_stale_run_dirs(&options.scratch);
    std::fs::create_dir_all(options.out.join("logs"))
        .with_context(|| format!("create the output directory {}", options.out.display()))?;
    raise_open_file_limit();
    let progress = Progress::new(options.progress);
    let mut results = Results {
        meta: crate::machine::meta(options.plan.mode.name(), &options.command_line),
        ..Results::default()
    };
    let mut options = options.clone();
    if options.perf {
        if let Err(e) = crate::profile::available() {
            results.skip("profiles", format!("{e:#}"));
            options.perf = false;
        }
    }
    let options = &options;
    let plan = &options.plan;

    if options.wants(Section::Ceilings) {
        let ceiling_plan = CeilingPlan {
            tcp_duration: plan.tcp_duration,
            disk_bytes: plan.disk_bytes,
            disk_queue_depth: plan.disk_queue_depth,
            cached_file_bytes: plan.cached_file_bytes,
            crc_duration: plan.crc_duration,
            repeats: plan.ceiling_repeats,
            dir: options.scratch.clone(),
        };
        match ceilings::measure(&ceiling_plan, &progress) {
            Ok(c) => {
                log(&progress, "ceilings measured");
                results.ceilings = Some(c)
            }
            Err(e) => results.skip("ceilings", format!("{e:#}")),
        }
    } else {
        results.skip("ceilings", "not selected");
    }

    let cluster_sections = [
        Section::Data,
        Section::Connections,
        Section::Metadata,
        Section::Memory,
        Section::Restarts,
        Section::Interop,
    ];
    if cluster_sections.iter().any(|s| options.wants(*s)) {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
        let run_dir = options.scratch.join(format!("ringfs-bench-{}", std::process::id()));
        let mut targets = start_targets(options, &runtime, &run_dir, &mut results, &progress);
        if targets.is_empty() {
            for section in cluster_sections {
                if options.wants(section) {
                    results.skip(section_name(section), "no cluster could be started or reached (see above)");
                }
            }
        } else {
            results.meta.cluster = targets[0].cluster.uri.clone();
            results.meta.engines = targets.iter().map(|t| t.engine.clone()).collect();
            run_cluster_sections(options, &runtime, &mut targets, &mut results, &progress);
        }
        for target in &mut targets {
            target.cluster.shutdown();
        }
        drop(targets);
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    for section in cluster_sections {
        if !options.wants(section) {
            results.skip(section_name(section), "not selected");
        }
    }

    let primary = results.meta.engines.first().cloned().unwrap_or_default();
    results.targets = report::check_targets(&results, &primary);
    results.meta.duration_seconds = started.elapsed().as_secs_f64();
    write_outputs(&results, &options.out)?;
    Ok(results)
}

/// Spawned-cluster directories left by runs that were killed (their pid is gone).
fn remove_stale_run_dirs(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix("ringfs-bench-").and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn section_name(section: Section) -> &'static str {
    match section {
        Section::Ceilings => "ceilings",
        Section::Data => "data_path",
        Section::Connections => "connections",
        Section::Metadata => "metadata",
        Section::Memory => "memory",
        Section::Restarts => "restarts",
        Section::Interop => "interop",
    }
}

/// Offered load of the paced connections run, as a fraction of the closed-loop rate.
const PACED_LOAD_FRACTION: f64 = 0.5;

/// A thousand busy plus a thousand idle connections need more descriptors than the
/// usual soft limit of 1024; the spawned cluster inherits the raised limit.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn start_targets(
    options: &Options,
    runtime: &tokio::runtime::Runtime,
    run_dir: &Path,
    results: &mut Results,
    progress: &Progress,
) -> Vec<Target> {
    let mut targets = Vec::new();
    let connect = |cluster: Cluster, engine: String| -> Result<Target> {
        let (verify, noverify) = runtime.block_on(async {
            let verify = dfsio::connect(&cluster.namenode_addr, true).await?;
            let noverify = dfsio::connect(&cluster.namenode_addr, false).await?;
            anyhow::Ok((verify, noverify))
        })?;
        Ok(Target { engine, cluster, verify, noverify })
    };
    if let Some(uri) = &options.namenode {
        match Cluster::external(uri).and_then(|c| connect(c, "external".to_string())) {
            Ok(target) => targets.push(target),
            Err(e) => results.skip("cluster", format!("{uri}: {e:#}")),
        }
        return targets;
    }
    let ringfs_bin = match cluster::find_ringfs_bin(options.ringfs_bin.as_deref()) {
        Ok(bin) => bin,
        Err(e) => {
            results.skip("cluster", format!("{e:#}"));
            return targets;
        }
    };
    for engine in &options.engines {
        let bar = progress.spinner(&format!("starting a {DATANODES}-datanode cluster, engine {engine}"));
        let spec = SpawnSpec {
            ringfs_bin: ringfs_bin.clone(),
            base_dir: run_dir.join(engine),
            datanodes: DATANODES,
            engine: engine.clone(),
            defines: vec![
                ("dfs.heartbeat.interval".into(), HEARTBEAT_INTERVAL_S.into()),
                ("dfs.blocksize".into(), options.plan.block_size.to_string()),
            ],
            log_path: options.out.join("logs").join(format!("cluster-{engine}.log")),
        };
        let started = Cluster::spawn(&spec).and_then(|c| connect(c, engine.clone()));
        bar.finish_and_clear();
        match started {
            Ok(target) => targets.push(target),
            Err(e) => {
                progress.println(&format!("engine {engine}: cluster did not start: {e:#}"));
                results.skip(&format!("engine {engine}"), format!("cluster did not start: {e:#}"));
            }
        }
    }
    targets
}

fn run_cluster_sections(
    options: &Options,
    runtime: &tokio::runtime::Runtime,
    targets: &mut [Target],
    results: &mut Results,
    progress: &Progress,
) {
    let plan = &options.plan;
    if options.wants(Section::Data) || options.wants(Section::Connections) {
        if let Err(e) = data_path(options, runtime, targets, results, progress) {
            results.skip("data_path", format!("aborted: {e:#}"));
        }
        results.engine_comparison = compare_engines(results);
        if targets.len() < 2 {
            results.skip("engine_comparison", "needs both engines (uring and threads) running");
        }
    }
    let primary = &mut targets[0];
    if options.wants(Section::Metadata) {
        let root = format!("/nnbench/run-{}", std::process::id());
        let recording = match (options.perf, primary.cluster.namenode_pid) {
            (true, Some(pid)) => {
                crate::profile::start(&options.out.join("profiles"), "metadata-namenode", &[pid]).ok()
            }
            _ => None,
        };
        let outcome = runtime.block_on(async {
            let clients =
                metadata::connect_clients(&primary.cluster.namenode_addr, plan.metadata_clients).await?;
            metadata::run(
                &clients,
                &root,
                plan.metadata_ops,
                primary.cluster.namenode_pid,
                progress,
                plan.phase_limit,
            )
            .await
        });
        results.metadata_profile =
            recording.and_then(|r| r.finish().ok()).map(|path| crate::results::Profile {
                file: path.strip_prefix(&options.out).unwrap_or(&path).display().to_string(),
                top: crate::profile::top_lines(&path, PROFILE_TOP_LINES),
            });
        match outcome {
            Ok(ops) => {
                for op in &ops {
                    log(
                        progress,
                        &format!(
                            "metadata {}: {:.0} ops/s, p99 {:.2} ms, {} errors",
                            op.op, op.ops_per_sec, op.latency.p99_ms, op.errors
                        ),
                    );
                }
                results.metadata = ops
            }
            Err(e) => results.skip("metadata", format!("{e:#}")),
        }
    }
    // Memory and restarts on the last cluster: its namenode has not run the metadata
    // phases, whose freed memory would hide the growth per file.
    let last = targets.len() - 1;
    let fresh = &mut targets[last];
    let mut files_in_namespace = 0;
    let mut probe_path = None;
    if options.wants(Section::Memory) || options.wants(Section::Restarts) {
        match memory(options, runtime, fresh, progress) {
            Ok((memory, probe)) => {
                files_in_namespace = memory.files + memory.empty_files;
                probe_path = Some(probe);
                log(
                    progress,
                    &format!(
                        "memory: {:.0} B per single-block file over {} files, {:.0} B per empty file",
                        memory.bytes_per_file, memory.files, memory.empty_bytes_per_file
                    ),
                );
                if options.wants(Section::Memory) {
                    results.memory = Some(memory);
                }
            }
            Err(e) => results.skip("memory", format!("{e:#}")),
        }
    }
    if options.wants(Section::Restarts) {
        if !fresh.cluster.is_spawned() {
            results.skip("restarts", "restarts need a cluster this run spawned (--spawn)");
        } else {
            let probe = probe_path.unwrap_or_else(|| "/".to_string());
            let restart_limit = plan.phase_limit.max(RESTART_LIMIT_MIN);
            let bar = progress.spinner(&format!("restarts: namenode with {files_in_namespace} files"));
            match restarts::namenode_restart(&mut fresh.cluster, runtime, &probe, restart_limit) {
                Ok((ready, serving)) => {
                    log(
                        progress,
                        &format!(
                            "namenode restart with {files_in_namespace} files: serving after {serving:.2} s"
                        ),
                    );
                    results.restarts.namenode = Some(NamenodeRestart {
                        files: files_in_namespace,
                        seconds_to_ready_line: ready,
                        seconds_to_serving: serving,
                        stop: "SIGTERM (clean stop)".into(),
                    })
                }
                Err(e) => results.skip("restarts.namenode", format!("{e:#}")),
            }
            if let Err(e) = wait_cluster_whole(runtime, fresh) {
                results.skip("restarts.recovery", format!("{e:#}"));
            }
            bar.set_message(format!("restarts: datanode with {} replicas", plan.restart_replicas));
            match restarts::datanode_restart(
                &mut fresh.cluster,
                runtime,
                0,
                plan.restart_replicas,
                plan.restart_replica_bytes,
                restart_limit,
            ) {
                Ok((ready, reported, generated)) => {
                    log(
                        progress,
                        &format!(
                            "datanode restart with {} replicas: block report after {reported:.2} s",
                            plan.restart_replicas
                        ),
                    );
                    results.restarts.datanode = Some(DatanodeRestart {
                        replicas: plan.restart_replicas,
                        seconds_to_ready_line: ready,
                        seconds_to_first_block_report: reported,
                        method: "namenode getDatanodeReport: lastBlockReportTime advanced".into(),
                        seconds_to_generate: generated,
                    })
                }
                Err(e) => results.skip("restarts.datanode", format!("{e:#}")),
            }
            bar.finish_and_clear();
            if let Err(e) = wait_cluster_whole(runtime, fresh) {
                results.skip("restarts.recovery", format!("{e:#}"));
            }
        }
    }
    let primary = &mut targets[0];
    if options.wants(Section::Interop) {
        match interop::client_env() {
            None => results.skip("interop", "real clients not installed (scripts/install-clients.sh)"),
            Some(env) => {
                let bar = progress.spinner("interop: hadoop fs -put/-get, hdfs-native read");
                match interop::run(
                    &env,
                    &primary.cluster.uri,
                    &options.scratch,
                    plan.interop_bytes,
                    plan.phase_limit,
                ) {
                    Ok(r) => {
                        log(progress, "interop: real clients measured");
                        results.interop = r
                    }
                    Err(e) => results.skip("interop", format!("{e:#}")),
                }
                bar.finish_and_clear();
            }
        }
    }
}

/// After a restart: every datanode live and safe mode off (left by force if the
/// threshold is not reached in time, which the report then says).
fn wait_cluster_whole(runtime: &tokio::runtime::Runtime, target: &Target) -> Result<()> {
    let addr = target.cluster.namenode_addr.clone();
    let datanodes = target.cluster.datanode_pids.len();
    runtime.block_on(async {
        restarts::wait_datanodes_live(&addr, datanodes, RECOVERY_TIMEOUT).await?;
        let start = Instant::now();
        loop {
            match target.noverify.namenode().set_safe_mode(SafeModeActionProto::SafemodeGet, false).await {
                Ok(false) => return Ok(()),
                Ok(true) if start.elapsed() > RECOVERY_TIMEOUT => {
                    target
                        .noverify
                        .namenode()
                        .set_safe_mode(SafeModeActionProto::SafemodeLeave, false)
                        .await?;
                    anyhow::bail!(
                        "safe mode still on {RECOVERY_TIMEOUT:?} after the restart; left it by force"
                    );
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
}

/// Namenode RSS per single-block file and per empty file; returns a file for the restart probe.
fn memory(
    options: &Options,
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    progress: &Progress,
) -> Result<(MemoryResult, String)> {
    let plan = &options.plan;
    let pid = target.cluster.namenode_pid.context("the namenode's pid is unknown (not on this host?)")?;
    let single_root = format!("/bench/memory-{}/single", std::process::id());
    let empty_root = format!("/bench/memory-{}/empty", std::process::id());
    let rss_before = process_rss_bytes(pid)?;
    let (done, errors, elapsed, first_error) = runtime.block_on(restarts::create_single_block_files(
        &target.noverify,
        &single_root,
        plan.memory_files,
        MEMORY_WRITERS,
        progress,
        plan.memory_limit,
    ));
    anyhow::ensure!(
        done > 0,
        "no single-block file could be created ({errors} errors; first: {})",
        first_error.unwrap_or_default()
    );
    let rss_single = process_rss_bytes(pid)?;
    let empty = runtime.block_on(async {
        let clients = metadata::connect_clients(&target.cluster.namenode_addr, plan.metadata_clients).await?;
        metadata::create_empty_files(
            &clients,
            &empty_root,
            plan.memory_empty_files,
            progress,
            plan.memory_limit,
        )
        .await
    })?;
    let rss_empty = process_rss_bytes(pid)?;
    let per = |after: u64, before: u64, files: u64| after.saturating_sub(before) as f64 / files.max(1) as f64;
    Ok((
        MemoryResult {
            file_kind: "single-block (1 byte, replication 1)".into(),
            files: done,
            rss_before_bytes: rss_before,
            rss_after_bytes: rss_single,
            bytes_per_file: per(rss_single, rss_before, done),
            seconds_to_create: elapsed.as_secs_f64(),
            empty_files: empty.ops,
            empty_bytes_per_file: per(rss_empty, rss_single, empty.ops),
        },
        restarts::single_block_path(&single_root, 0),
    ))
}

/// The data-path steps, in the order each round runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Write1R1,
    Write1R3,
    ReadHotNoVerify,
    ReadHotVerify,
    ReadCold,
    WriteMany,
    ReadHotMany,
    Pread,
    Connections,
}

const STEPS: [Step; 9] = [
    Step::Write1R1,
    Step::Write1R3,
    Step::ReadHotNoVerify,
    Step::ReadHotVerify,
    Step::ReadCold,
    Step::WriteMany,
    Step::ReadHotMany,
    Step::Pread,
    Step::Connections,
];

fn data_path(
    options: &Options,
    runtime: &tokio::runtime::Runtime,
    targets: &mut [Target],
    results: &mut Results,
    progress: &Progress,
) -> Result<()> {
    let plan = &options.plan;
    let ceilings = results.ceilings.clone();
    for round in 0..plan.rounds {
        let base = format!("/bench/data-{}/r{round}", std::process::id());
        for (k, step) in STEPS.iter().enumerate() {
            let run_data = options.wants(Section::Data);
            let run_connections = options.wants(Section::Connections) && round == 0;
            let wanted = match step {
                Step::Connections => run_connections,
                // The connections test reads the file this step writes.
                Step::Write1R1 => run_data || run_connections,
                _ => run_data,
            };
            if !wanted {
                continue;
            }
            // Alternate which engine goes first, so neither always runs on a warmer machine.
            let n = targets.len();
            for i in 0..n {
                let target = &targets[(i + round + k) % n];
                match run_step(options, runtime, target, *step, round, &base, ceilings.as_ref(), progress) {
                    Ok(StepOutcome::Scenario(s)) => results.data_path.push(*s),
                    Ok(StepOutcome::Connections(c)) => results.connections.push(*c),
                    Ok(StepOutcome::Skipped(reason)) => {
                        results.skip(&format!("data_path {step:?} [{}]", target.engine), reason)
                    }
                    Err(e) => {
                        results.skip(&format!("data_path {step:?} [{}]", target.engine), format!("{e:#}"))
                    }
                }
            }
        }
        for target in targets.iter() {
            let _ = runtime.block_on(target.noverify.delete(&base, true));
        }
    }
    Ok(())
}

enum StepOutcome {
    Scenario(Box<DataScenario>),
    Connections(Box<ConnectionsResult>),
    Skipped(String),
}

/// Brings a file's blocks into the page cache (hot) or out of it (cold).
fn set_cache(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    paths: &[String],
    hot: bool,
    io_size: usize,
    limit: Duration,
) -> Result<Option<String>> {
    if target.cluster.base_dir.is_some() {
        let dirs = target.data_dirs();
        let ids = runtime.block_on(dfsio::block_ids(&target.noverify, paths))?;
        if hot {
            dfsio::warm_block_files(&dirs, &ids)?;
        } else {
            let evicted = dfsio::evict_block_files(&dirs, &ids)?;
            anyhow::ensure!(evicted > 0, "none of the {} blocks of {paths:?} was found on disk", ids.len());
        }
        return Ok(None);
    }
    if hot {
        let bar = indicatif::ProgressBar::hidden();
        runtime.block_on(dfsio::read_files(&target.noverify, paths, io_size, &bar, limit));
        return Ok(None);
    }
    // An external cluster's block files are not ours to find: drop the whole page cache.
    if nix::unistd::geteuid().is_root() {
        nix::unistd::sync();
        std::fs::write("/proc/sys/vm/drop_caches", "1").context("drop caches")?;
        return Ok(None);
    }
    Ok(Some("cold reads of an external cluster need root (drop_caches)".into()))
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    options: &Options,
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    step: Step,
    round: usize,
    base: &str,
    ceilings: Option<&Ceilings>,
    progress: &Progress,
) -> Result<StepOutcome> {
    let plan = &options.plan;
    let one_r1 = vec![format!("{base}/one_r1.bin")];
    let one_r3 = vec![format!("{base}/one_r3.bin")];
    let many: Vec<String> = (0..plan.many_streams).map(|i| format!("{base}/many/f{i:03}.bin")).collect();
    let many_bytes = plan.many_file_bytes * plan.many_streams as u64;
    let ceiling = |name: &str| -> (String, f64) {
        match ceilings {
            None => (String::new(), 0.0),
            Some(c) if name == "write" => {
                let (copy, disk) = (c.tcp_copy.bytes_per_sec, c.disk_write_direct.bytes_per_sec);
                if copy <= disk {
                    ("tcp_copy (< disk write)".into(), copy)
                } else {
                    ("disk_write_direct (< tcp copy)".into(), disk)
                }
            }
            Some(c) => (name.to_string(), c.get(name).map(|c| c.bytes_per_sec).unwrap_or(0.0)),
        }
    };
    let label = format!("{step:?} [{}] round {round}", target.engine);
    let (name, description, op, files, file_bytes, replication, cache, verify, ceiling_name, latency_op): (
        &str,
        &str,
        &str,
        &[String],
        u64,
        u32,
        &str,
        bool,
        &str,
        String,
    ) = match step {
        Step::Write1R1 => (
            scenario::WRITE_1_R1,
            "one stream writes one file, replication 1",
            "write",
            &one_r1,
            plan.stream_file_bytes,
            1,
            "",
            false,
            "write",
            format!("{} MiB write_all", plan.io_size >> 20),
        ),
        Step::Write1R3 => (
            scenario::WRITE_1_R3,
            "one stream writes one file, replication 3 (pipeline of three datanodes)",
            "write",
            &one_r3,
            plan.r3_file_bytes,
            3,
            "",
            false,
            "write",
            format!("{} MiB write_all", plan.io_size >> 20),
        ),
        Step::ReadHotNoVerify => (
            scenario::READ_HOT_1_NOVERIFY,
            "one stream reads the replication-1 file from the page cache, checksum verification off",
            "read",
            &one_r1,
            plan.stream_file_bytes,
            1,
            "hot",
            false,
            "tcp_sendfile",
            format!("{} MiB read", plan.io_size >> 20),
        ),
        Step::ReadHotVerify => (
            scenario::READ_HOT_1_VERIFY,
            "as above with the client verifying every chunk's CRC32C",
            "read",
            &one_r1,
            plan.stream_file_bytes,
            1,
            "hot",
            true,
            "tcp_sendfile",
            format!("{} MiB read", plan.io_size >> 20),
        ),
        Step::ReadCold => (
            scenario::READ_COLD_1,
            "one stream reads the replication-1 file after its block files were evicted",
            "read",
            &one_r1,
            plan.stream_file_bytes,
            1,
            "cold",
            false,
            "disk_read_direct",
            format!("{} MiB read", plan.io_size >> 20),
        ),
        Step::WriteMany => (
            scenario::WRITE_MANY_R1,
            "many streams each write one file, replication 1",
            "write",
            &many,
            plan.many_file_bytes,
            1,
            "",
            false,
            "write",
            format!("{} MiB write_all", plan.io_size >> 20),
        ),
        Step::ReadHotMany => (
            scenario::READ_HOT_MANY,
            "many streams each read one file from the page cache, verification off",
            "read",
            &many,
            plan.many_file_bytes,
            1,
            "hot",
            false,
            "tcp_sendfile",
            format!("{} MiB read", plan.io_size >> 20),
        ),
        Step::Pread => (
            scenario::PREAD_64K,
            "positional reads of 64 KiB at random offsets of the replication-1 file (hot)",
            "pread",
            &one_r1,
            plan.stream_file_bytes,
            1,
            "hot",
            false,
            "tcp_sendfile",
            format!("{} KiB pread", plan.pread_size >> 10),
        ),
        Step::Connections => {
            ("connections", "", "pread", &one_r1, plan.stream_file_bytes, 1, "hot", false, "", String::new())
        }
    };
    let client = if verify { &target.verify } else { &target.noverify };
    if op != "write" {
        if let Some(reason) =
            set_cache(runtime, target, files, cache == "hot", plan.io_size, plan.phase_limit)?
        {
            return Ok(StepOutcome::Skipped(reason));
        }
    }
    let pids = target.cluster.live_datanode_pids();
    let overflows_before = crate::stats::listen_overflows();
    let dn_cpu_before = total_cpu_seconds(&pids);
    let client_cpu_before = own_cpu_seconds();
    let recording = if options.perf && !pids.is_empty() {
        let name = format!(
            "{}-{}-r{round}",
            if step == Step::Connections { "connections" } else { name },
            target.engine
        );
        crate::profile::start(&options.out.join("profiles"), &name, &pids).ok()
    } else {
        None
    };
    let mut idle = Vec::new();
    let mut paced: Option<(f64, Measured)> = None;
    let measured: Measured = match step {
        Step::Write1R1 | Step::Write1R3 | Step::WriteMany => {
            let total = file_bytes * files.len() as u64;
            let bar = progress.bytes(&label, total);
            let m = runtime.block_on(dfsio::write_files(
                client,
                files,
                dfsio::WriteSpec {
                    file_bytes,
                    replication: replication as u16,
                    block_size: plan.block_size,
                    io_size: plan.io_size,
                },
                &bar,
                plan.phase_limit,
            ));
            bar.finish_and_clear();
            m
        }
        Step::ReadHotNoVerify | Step::ReadHotVerify | Step::ReadCold | Step::ReadHotMany => {
            let total = if step == Step::ReadHotMany { many_bytes } else { file_bytes };
            let bar = progress.bytes(&label, total);
            let m = runtime.block_on(dfsio::read_files(client, files, plan.io_size, &bar, plan.phase_limit));
            bar.finish_and_clear();
            m
        }
        Step::Pread => {
            let bar = progress.count(&label, plan.pread_ops);
            let m = runtime.block_on(dfsio::positional_reads(
                client,
                &files[0],
                plan.pread_streams,
                plan.pread_ops,
                plan.pread_size,
                None,
                &bar,
                plan.phase_limit,
            ));
            bar.finish_and_clear();
            m
        }
        Step::Connections => {
            idle = runtime.block_on(dfsio::open_idle_connections(client, plan.idle_connections))?;
            let reads = plan.connections as u64 * plan.connection_reads_each;
            let bar = progress.count(&label, reads);
            let m = runtime.block_on(dfsio::positional_reads(
                client,
                &files[0],
                plan.connections,
                reads,
                plan.pread_size,
                None,
                &bar,
                plan.phase_limit,
            ));
            bar.finish_and_clear();
            // Then the same connections paced at half the rate just reached: closed-loop
            // latency with a thousand reads outstanding is queueing (connections divided
            // by throughput), the paced run measures the latency a reader sees at a load
            // the node sustains.
            let saturated = m.latency.count() as f64 / m.elapsed.as_secs_f64().max(1e-9);
            if saturated > 0.0 {
                let offered = saturated * PACED_LOAD_FRACTION;
                let pace = Duration::from_secs_f64(plan.connections as f64 / offered);
                let bar = progress.count(&format!("{label} paced"), reads);
                let p = runtime.block_on(dfsio::positional_reads(
                    client,
                    &files[0],
                    plan.connections,
                    reads,
                    plan.pread_size,
                    Some(pace),
                    &bar,
                    plan.phase_limit,
                ));
                bar.finish_and_clear();
                paced = Some((offered, p));
            }
            m
        }
    };
    let dn_cpu = total_cpu_seconds(&pids) - dn_cpu_before;
    let overflows_after = crate::stats::listen_overflows();
    let profile = recording.and_then(|r| r.finish().ok()).map(|path| crate::results::Profile {
        file: path.strip_prefix(&options.out).unwrap_or(&path).display().to_string(),
        top: crate::profile::top_lines(&path, PROFILE_TOP_LINES),
    });
    let client_cpu = own_cpu_seconds() - client_cpu_before;
    let idle_count = idle.len();
    drop(idle);
    let seconds = measured.elapsed.as_secs_f64();
    for sample in &measured.error_samples {
        progress.println(&format!("{label}: {sample}"));
    }
    if step == Step::Connections {
        let summary = measured.latency.summary();
        log(
            progress,
            &format!(
                "{label}: {} reads in {seconds:.2} s, p99 {:.2} ms, {} errors, {} listen overflows",
                measured.latency.count(),
                summary.p99_ms,
                measured.errors,
                overflows_after.0 - overflows_before.0
            ),
        );
        return Ok(StepOutcome::Connections(Box::new(ConnectionsResult {
            engine: target.engine.clone(),
            connections: plan.connections,
            idle_connections: idle_count,
            reads: measured.latency.count(),
            read_bytes: plan.pread_size,
            errors: measured.errors,
            error_samples: measured
                .error_samples
                .iter()
                .chain(paced.iter().flat_map(|(_, p)| p.error_samples.iter()))
                .cloned()
                .collect(),
            seconds,
            reads_per_sec: measured.latency.count() as f64 / seconds.max(1e-9),
            bytes_per_sec: measured.bytes as f64 / seconds.max(1e-9),
            latency: summary,
            datanode_cpu_seconds: dn_cpu,
            paced_offered_reads_per_sec: paced.as_ref().map_or(0.0, |(offered, _)| *offered),
            paced_reads: paced.as_ref().map_or(0, |(_, p)| p.latency.count()),
            paced_errors: paced.as_ref().map_or(0, |(_, p)| p.errors),
            paced_latency: paced.as_ref().map(|(_, p)| p.latency.summary()),
            listen_overflows: overflows_after.0.saturating_sub(overflows_before.0),
            listen_drops: overflows_after.1.saturating_sub(overflows_before.1),
        })));
    }
    let (ceiling_label, ceiling_rate) = ceiling(ceiling_name);
    let bytes_per_sec = measured.bytes as f64 / seconds.max(1e-9);
    let summary = measured.latency.summary();
    log(
        progress,
        &format!(
            "{label}: {} in {seconds:.2} s, p99 {:.2} ms, datanode CPU {dn_cpu:.2} s, {} errors",
            report::gb(bytes_per_sec),
            summary.p99_ms,
            measured.errors
        ),
    );
    Ok(StepOutcome::Scenario(Box::new(DataScenario {
        name: name.to_string(),
        description: description.to_string(),
        op: op.to_string(),
        engine: target.engine.clone(),
        round,
        replication,
        streams: if step == Step::Pread { plan.pread_streams } else { files.len() },
        files: files.len(),
        file_bytes,
        cache: cache.to_string(),
        verify_checksum: verify,
        bytes: measured.bytes,
        seconds,
        bytes_per_sec,
        latency_op,
        latency: summary,
        datanode_cpu_seconds: dn_cpu,
        client_cpu_seconds: client_cpu,
        bytes_per_datanode_cpu_second: measured.bytes as f64 / dn_cpu.max(CPU_TICK_S),
        errors: measured.errors,
        ceiling: ceiling_label,
        ceiling_bytes_per_sec: ceiling_rate,
        ratio_to_ceiling: if ceiling_rate > 0.0 { bytes_per_sec / ceiling_rate } else { 0.0 },
        profile,
    })))
}

/// uring against threads per scenario, medians over rounds.
fn compare_engines(results: &Results) -> Vec<EngineComparison> {
    let mut names: Vec<&str> = Vec::new();
    for s in &results.data_path {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    let mut out = Vec::new();
    for name in names {
        let figures = |engine: &str| -> Option<(f64, f64, usize)> {
            let runs: Vec<&DataScenario> = results
                .data_path
                .iter()
                .filter(|s| s.name == name && s.engine == engine && s.errors == 0)
                .collect();
            if runs.is_empty() {
                return None;
            }
            let mut rates: Vec<f64> = runs.iter().map(|s| s.bytes_per_sec).collect();
            let mut efficiency: Vec<f64> = runs.iter().map(|s| s.bytes_per_datanode_cpu_second).collect();
            Some((median(&mut rates), median(&mut efficiency), runs.len()))
        };
        let (Some(uring), Some(threads)) = (figures("uring"), figures("threads")) else { continue };
        out.push(EngineComparison {
            scenario: name.to_string(),
            uring_bytes_per_sec: uring.0,
            threads_bytes_per_sec: threads.0,
            throughput_ratio: uring.0 / threads.0.max(1e-9),
            uring_bytes_per_cpu_second: uring.1,
            threads_bytes_per_cpu_second: threads.1,
            efficiency_ratio: uring.1 / threads.1.max(1e-9),
            rounds: uring.2.min(threads.2),
        });
    }
    out
}

/// results.json, report.md, the plots, and the terminal table (printed by the caller).
fn write_outputs(results: &Results, out: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(results)?;
    std::fs::write(out.join("results.json"), json).context("write results.json")?;
    let mut md = report::markdown(results);
    match plots::write_all(results, out) {
        Ok(files) if !files.is_empty() => {
            md.push_str("\nPlots written: ");
            md.push_str(&files.join(", "));
            md.push('\n');
        }
        Ok(_) => {}
        Err(e) => md.push_str(&format!("\nPlots could not be drawn: {e:#}\n")),
    }
    std::fs::write(out.join("report.md"), md).context("write report.md")?;
    std::fs::write(out.join("table.txt"), report::terminal(results)).context("write table.txt")?;
    Ok(())
}

/// `./bench-results/<UTC timestamp>`.
pub fn default_out_dir() -> PathBuf {
    PathBuf::from("bench-results").join(crate::machine::timestamp_compact())
}

/// Where spawned clusters and test files go when `--scratch` is not given.
pub fn default_scratch() -> PathBuf {
    std::env::temp_dir()
}

impl Mode {
    pub fn plan(self) -> Plan {
        Plan::new(self)
    }
}
