//! `ringfs datanode`: runs a DataNode until SIGTERM or SIGINT.
//!
//! Once registered with the namenode and its first block report is sent, it prints one
//! line on stdout:
//! ```text
//! DATANODE READY xfer=<ip:port> ipc=<ip:port> http=<ip:port> uuid=<uuid>
//! ```

use std::io::Write;

use anyhow::Context;
use ringfs_datanode::DataNode;
use tokio::signal::unix::{signal, SignalKind};

use crate::cmd::conf::{init_logging, load};

const USAGE: &str = "Usage: ringfs datanode [--conf DIR] [-D key=value ...]";

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Vec<String>) -> i32 {
    init_logging();
    match run_datanode(args) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("datanode failed: {e:#}");
            eprintln!("ringfs datanode: {e:#}");
            1
        }
    }
}

fn run_datanode(args: Vec<String>) -> anyhow::Result<()> {
    let (conf, rest) = load(args)?;
    if let Some(extra) = rest.first() {
        if matches!(extra.as_str(), "-h" | "--help") {
            println!("{USAGE}");
            return Ok(());
        }
        anyhow::bail!("unexpected argument {extra:?}\n{USAGE}");
    }
    // Blocking work (volume scans, engine threads) runs off the runtime; two workers
    // carry the namenode actor and the IPC/http servers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dn-runtime")
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime.block_on(async move {
        let mut terminate = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
        let datanode = tokio::select! {
            started = DataNode::start(&conf) => started?,
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
        };
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", datanode.ready.ready_line()).context("write the READY line")?;
        stdout.flush().context("flush stdout")?;
        drop(stdout);
        let mut engine_check = tokio::time::interval(std::time::Duration::from_secs(1));
        let failed = loop {
            tokio::select! {
                _ = terminate.recv() => break false,
                _ = interrupt.recv() => break false,
                _ = engine_check.tick() => {
                    if datanode.engine_failed() {
                        break true;
                    }
                }
            }
        };
        tracing::info!("stopping the datanode");
        datanode.stop().await;
        if failed {
            anyhow::bail!("the data-port engine stopped");
        }
        Ok(())
    })
}
