//! `ringfs-bench`: how fast ringfs is on this machine, against the machine's own limits.
//!
//! ```text
//! ringfs-bench quick                     # under 2 minutes: ceilings, both engines, metadata, restarts
//! ringfs-bench full --out results/       # the issue's sizes (1 GiB streams, 1M files, 100k replicas)
//! ringfs-bench quick --namenode hdfs://127.0.0.1:8020   # a running cluster instead of spawned ones
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mimalloc::MiMalloc;
use ringfs_bench::plan::{Mode, Plan};
use ringfs_bench::runner::{self, Options, Section};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringfs-bench",
    version,
    about = "Throughput, latency and efficiency of ringfs against this machine's ceilings"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Small sizes, every section, under two minutes on a 2-core machine.
    Quick(RunArgs),
    /// The issue's sizes: 1 GiB streams, three interleaved rounds, 1M files, 100k replicas.
    Full(RunArgs),
    /// Seconds: proves the harness runs end to end (used by the smoke test).
    Tiny(RunArgs),
    /// Only the machine's ceilings (loopback TCP, O_DIRECT disk, CRC32C).
    Ceilings(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Start clusters in a temporary directory (the default), one per engine.
    #[arg(long, conflicts_with = "namenode")]
    spawn: bool,
    /// Measure a running cluster instead: hdfs://HOST:PORT.
    #[arg(long, value_name = "URI")]
    namenode: Option<String>,
    /// Output folder (default ./bench-results/<UTC timestamp>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The ringfs binary (default: $RINGFS_BIN, else next to ringfs-bench).
    #[arg(long, value_name = "PATH")]
    ringfs_bin: Option<PathBuf>,
    /// Directory for spawned clusters and test files (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
    /// Datanode engines to compare, interleaved.
    #[arg(long, value_delimiter = ',', default_value = "uring,threads")]
    engines: Vec<String>,
    /// Run only these sections.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Leave out these sections.
    #[arg(long, value_enum, value_delimiter = ',')]
    skip: Vec<Section>,
    /// Interleaved rounds per data-path scenario (default: 1 quick, 3 full).
    #[arg(long)]
    rounds: Option<usize>,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
    /// Profile the datanodes (each data-path phase) and the namenode (metadata) with
    /// `perf record -e cpu-clock`; summaries go to <out>/profiles/.
    #[arg(long)]
    perf: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mode, args, ceilings_only) = match cli.command {
        Command::Quick(a) => (Mode::Quick, a, false),
        Command::Full(a) => (Mode::Full, a, false),
        Command::Tiny(a) => (Mode::Tiny, a, false),
        Command::Ceilings(a) => (Mode::Quick, a, true),
    };
    let mut plan = Plan::new(mode);
    if let Some(rounds) = args.rounds {
        plan.rounds = rounds.max(1);
    }
    let all = [
        Section::Ceilings,
        Section::Data,
        Section::Connections,
        Section::Metadata,
        Section::Memory,
        Section::Restarts,
        Section::Interop,
    ];
    let sections: Vec<Section> = if ceilings_only {
        vec![Section::Ceilings]
    } else if args.only.is_empty() {
        all.to_vec()
    } else {
        args.only.clone()
    };
    let sections = sections.into_iter().filter(|s| !args.skip.contains(s)).collect();
    let out = args.out.unwrap_or_else(runner::default_out_dir);
    let options = Options {
        plan,
        namenode: args.namenode,
        out: out.clone(),
        ringfs_bin: args.ringfs_bin,
        scratch: args.scratch.unwrap_or_else(runner::default_scratch),
        engines: args.engines,
        sections,
        progress: !args.no_progress,
        perf: args.perf,
        command_line: std::env::args().collect(),
    };
    match runner::run(&options) {
        Ok(results) => {
            print!("{}", ringfs_bench::report::terminal(&results));
            println!(
                "\nresults: {}/results.json, {}/report.md, plots in {}",
                out.display(),
                out.display(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringfs-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
