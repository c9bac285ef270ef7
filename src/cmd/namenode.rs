//! `ringfs namenode [-format [-force] [-clusterid ID]]`.
//!
//! Without `-format`: serves the namespace in `dfs.namenode.name.dir` on
//! `dfs.namenode.rpc-address` (else the authority of `fs.defaultFS`, port 8020; port 0
//! picks a free one), prints `NAMENODE READY rpc=<host:port>` once serving, and on
//! SIGTERM/SIGINT writes a checkpoint and exits 0.

use std::io::Write;

use anyhow::{bail, Context};
use ringfs_namenode::permission::process_user;
use ringfs_namenode::{NameNode, NameNodeConfig};
use tokio::signal::unix::{signal, SignalKind};

use crate::cmd::conf::{init_logging, load};

const USAGE: &str =
    "Usage: ringfs namenode [--conf DIR] [-D key=value ...] [-format [-force] [-clusterid ID]]";

struct Options {
    format: bool,
    force: bool,
    cluster_id: Option<String>,
}

fn parse(rest: &[String]) -> anyhow::Result<Options> {
    let mut options = Options { format: false, force: false, cluster_id: None };
    let mut iter = rest.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-format" | "--format" => options.format = true,
            "-force" | "--force" => options.force = true,
            // Hadoop's flag; formatting never prompts here.
            "-nonInteractive" => {}
            "-clusterid" | "-clusterId" | "--clusterid" => {
                options.cluster_id = Some(iter.next().context("-clusterid needs a value")?.clone());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if (options.force || options.cluster_id.is_some()) && !options.format {
        bail!("-force and -clusterid only apply with -format\n{USAGE}");
    }
    Ok(options)
}

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Vec<String>) -> i32 {
    init_logging();
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringfs namenode: {e:#}");
            1
        }
    }
}

fn run_inner(args: Vec<String>) -> anyhow::Result<i32> {
    let (conf, rest) = load(args)?;
    let options = parse(&rest)?;
    let config = NameNodeConfig::from_conf(&conf).context("reading the configuration")?;
    if options.format {
        let info = ringfs_namenode::format(
            &config.name_dir,
            options.cluster_id.as_deref(),
            options.force,
            &process_user(),
            &config.supergroup,
        )
        .context("formatting the name directory")?;
        println!(
            "Formatted {} (clusterID={}, namespaceID={}, blockpoolID={})",
            config.name_dir.display(),
            info.cluster_id,
            info.namespace_id,
            info.block_pool_id
        );
        return Ok(0);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("namenode")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: NameNodeConfig) -> anyhow::Result<i32> {
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut namenode = NameNode::start(config).await.context("starting the namenode")?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "NAMENODE READY rpc={}", namenode.rpc_address()).context("writing to stdout")?;
        stdout.flush().context("flushing stdout")?;
    }
    let reason = tokio::select! {
        _ = terminate.recv() => None,
        _ = interrupt.recv() => None,
        fatal = namenode.fatal_error() => Some(fatal),
    };
    if let Some(reason) = reason {
        eprintln!("ringfs namenode: stopping: {reason}");
        return Ok(1);
    }
    tracing::info!("signal received; checkpointing and stopping");
    namenode.shutdown().await.context("shutting down")?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_format_flags() {
        let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let options = parse(&args(&["-format", "-force", "-clusterid", "CID-x"])).unwrap();
        assert!(options.format && options.force);
        assert_eq!(options.cluster_id.as_deref(), Some("CID-x"));
        assert!(!parse(&[]).unwrap().format);
        assert!(parse(&args(&["-force"])).is_err());
        assert!(parse(&args(&["-bogus"])).is_err());
    }
}
