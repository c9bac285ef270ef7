//! Configuration sources shared by every subcommand, as Hadoop's GenericOptionsParser
//! reads them: `--conf DIR` (or `-conf DIR`, or `HADOOP_CONF_DIR`) with core-site.xml and
//! hdfs-site.xml, then `-D key=value` / `-Dkey=value` anywhere on the line, then
//! `-fs URI` (sets fs.defaultFS).

use std::path::Path;

use anyhow::{bail, Context};
use ringfs_common::conf::Configuration;

/// Parses configuration options out of `args`, returning the configuration and the
/// remaining (command) arguments in order. Unknown keys are logged, not fatal.
pub fn load(args: Vec<String>) -> anyhow::Result<(Configuration, Vec<String>)> {
    let mut conf = Configuration::new();
    let mut rest = Vec::new();
    let mut conf_dirs = Vec::new();
    let mut overrides = Vec::new();
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--conf" | "-conf" | "--config" => {
                conf_dirs.push(iter.next().context("--conf needs a directory")?);
            }
            "-D" => overrides.push(iter.next().context("-D needs key=value")?),
            "-fs" => overrides.push(format!("fs.defaultFS={}", iter.next().context("-fs needs a URI")?)),
            s if s.starts_with("-D") && s.len() > 2 && s.contains('=') => overrides.push(s[2..].to_string()),
            s if s.starts_with("--conf=") => conf_dirs.push(s["--conf=".len()..].to_string()),
            _ => rest.push(arg),
        }
    }
    if conf_dirs.is_empty() {
        if let Ok(dir) = std::env::var("HADOOP_CONF_DIR") {
            conf_dirs.push(dir);
        }
    }
    for dir in &conf_dirs {
        let dir = Path::new(dir);
        if !dir.is_dir() {
            bail!("configuration directory {} does not exist", dir.display());
        }
        for file in ["core-site.xml", "hdfs-site.xml"] {
            let path = dir.join(file);
            if !path.exists() {
                continue;
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
            for key in conf.merge_xml(&path.display().to_string(), &text)? {
                tracing::info!(key, file = %path.display(), "configuration key not used by ringfs");
            }
        }
    }
    for arg in overrides {
        if !conf.set_override(&arg)? {
            tracing::info!(arg, "configuration key not used by ringfs");
        }
    }
    Ok((conf, rest))
}

/// Starts `tracing` logging to stderr, filtered by `RUST_LOG` (default info). Colour only
/// when stderr is a terminal, so log files stay plain text.
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
