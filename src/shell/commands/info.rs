//! Commands that only read metadata: `-du -count -stat -test -df -find -checksum`.

use ringfs_common::proto::hdfs::FsActionProto;

use super::super::format::{
    count_columns, count_header, quota_usage_columns, render_df, size, stat_line, Table,
};
use super::super::glob::GlobPattern;
use super::super::options::CommandFormat;
use super::super::paths::PathItem;
use super::super::{children, Shell, ShellError, IS_DIR};
use super::{expand_all, reported_missing, walk};

/// `-checksum [-v] <src> ...`: `PATH\tALGORITHM\tHEX`.
pub async fn checksum(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let opts =
        CommandFormat { min_args: 1, max_args: usize::MAX, flags: &["v"], valued: &[] }.parse(&mut args)?;
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        if item.is_dir() {
            shell.report(&ShellError::path(&item.display, IS_DIR));
            continue;
        }
        let client = shell.client(&item.authority).await?;
        match client.file_checksum(&item.path).await {
            Ok(sum) => {
                let mut line = format!("{}\t{}\t{}", item.display, sum.algorithm_name(), sum.to_hex());
                if opts.has("v") {
                    let block_size = item.stat.as_ref().map_or(0, |s| s.block_size);
                    line.push_str(&format!("\tBlockSize={block_size}"));
                }
                shell.println(&line);
            }
            Err(e) => shell.report(&e.into()),
        }
    }
    Ok(0)
}

/// `-du [-s] [-h] [-v] [-x] <path> ...`: size and space consumed with all replicas.
pub async fn du(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let opts = CommandFormat { min_args: 0, max_args: usize::MAX, flags: &["s", "h", "v", "x"], valued: &[] }
        .parse(&mut args)?;
    if args.is_empty() {
        args.push(".".to_string());
    }
    let human = opts.has("h");
    let mut table = Table::default();
    if opts.has("v") {
        let header = ["SIZE", "DISK_SPACE_CONSUMED_WITH_ALL_REPLICAS", "FULL_PATH_NAME"];
        table.add_row(header.iter().map(|s| s.to_string()).collect());
    }
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        let targets = if item.is_dir() && !opts.has("s") {
            match children(shell, &item).await {
                Ok(children) => children,
                Err(e) => {
                    shell.report(&e);
                    continue;
                }
            }
        } else {
            vec![item]
        };
        for target in targets {
            let client = shell.client(&target.authority).await?;
            match client.namenode().get_content_summary(&target.path).await {
                Ok(summary) => table.add_row(vec![
                    size(summary.length as i64, human),
                    size(summary.space_consumed as i64, human),
                    target.display.clone(),
                ]),
                Err(e) => shell.report(&e.into()),
            }
        }
    }
    if !table.is_empty() {
        let text = table.render();
        shell.print(&text);
    }
    Ok(0)
}

/// `-count [-q] [-h] [-v] [-u] [-x] <path> ...`.
pub async fn count(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let format = CommandFormat {
        min_args: 1,
        max_args: usize::MAX,
        flags: &["q", "h", "v", "u", "x", "e", "s", "t"],
        valued: &[],
    };
    let opts = format.parse(&mut args)?;
    for unsupported in ["t", "e", "s"] {
        if opts.has(unsupported) {
            let what = match unsupported {
                "t" => "storage type quotas",
                "e" => "erasure coding policies",
                _ => "snapshot counts",
            };
            return Err(ShellError::Usage(format!("-{unsupported} ({what}) is not supported by ringfs")));
        }
    }
    let (with_quota, usage_only, human) = (opts.has("q"), opts.has("u"), opts.has("h"));
    if opts.has("v") {
        shell.println(&count_header(with_quota, usage_only));
    }
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        let client = shell.client(&item.authority).await?;
        let line = if usage_only {
            client.namenode().get_quota_usage(&item.path).await.map(|u| quota_usage_columns(&u, human))
        } else {
            client
                .namenode()
                .get_content_summary(&item.path)
                .await
                .map(|s| count_columns(&s, with_quota, human))
        };
        match line {
            Ok(columns) => shell.println(&format!("{columns}{}", item.display)),
            Err(e) => shell.report(&e.into()),
        }
    }
    Ok(0)
}

/// `-stat [format] <path> ...` (default `%y`).
pub async fn stat(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let format = CommandFormat { min_args: 1, max_args: usize::MAX, flags: &["R"], valued: &[] };
    let opts = format.parse(&mut args)?;
    let pattern = if args[0].contains('%') { args.remove(0) } else { "%y".to_string() };
    format.check_count(args.len())?;
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        let items = if opts.has("R") { walk(shell, item).await? } else { vec![item] };
        for item in items {
            let stat = item.stat.as_ref().expect("existing items have a status");
            let line = stat_line(&pattern, stat);
            shell.println(&line);
        }
    }
    Ok(0)
}

/// `-test -[defswrz] <path>`: the answer is the exit code, nothing is printed.
pub async fn test(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let flags = ["e", "d", "f", "s", "z", "w", "r"];
    let opts = CommandFormat { min_args: 1, max_args: 1, flags: &flags, valued: &[] }.parse(&mut args)?;
    let given: Vec<&str> = flags.iter().copied().filter(|f| opts.has(f)).collect();
    let flag = match given.as_slice() {
        [] => return Err(ShellError::Usage("No test flag given".to_string())),
        [one] => *one,
        _ => return Err(ShellError::Usage("Only one test flag is allowed".to_string())),
    };
    let mut code = 0;
    for item in expand_all(shell, &args).await? {
        let Some(stat) = item.stat.as_ref() else {
            code = 1;
            continue;
        };
        let passed = match flag {
            "e" => true,
            "d" => stat.is_dir(),
            "f" => stat.is_file(),
            "s" => stat.length > 0,
            "z" => stat.length == 0,
            access => {
                let mode = if access == "w" { FsActionProto::Write } else { FsActionProto::Read };
                let client = shell.client(&item.authority).await?;
                match client.namenode().check_access(&item.path, mode).await {
                    Ok(()) => true,
                    Err(e) if e.is_access_denied() => false,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if !passed {
            code = 1;
        }
    }
    Ok(code)
}

/// `-df [-h] [<path> ...]`: capacity of the filesystem holding each path.
pub async fn df(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let opts =
        CommandFormat { min_args: 0, max_args: usize::MAX, flags: &["h"], valued: &[] }.parse(&mut args)?;
    if args.is_empty() {
        args.push("/".to_string());
    }
    let human = opts.has("h");
    let mut rows = vec![["Filesystem", "Size", "Used", "Available", "Use%"].map(String::from)];
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        let client = shell.client(&item.authority).await?;
        match client.namenode().get_fs_stats().await {
            Ok(stats) => rows.push([
                Shell::fs_uri(&item.authority),
                size(stats.capacity as i64, human),
                size(stats.used as i64, human),
                size(stats.remaining as i64, human),
                super::super::format::percent(stats.used as f64 / stats.capacity as f64),
            ]),
            Err(e) => shell.report(&e.into()),
        }
    }
    let text = render_df(&rows);
    shell.print(&text);
    Ok(0)
}

/// One test of a `-find` expression.
enum FindTest {
    Name { glob: GlobPattern, ignore_case: bool },
}

/// `-find <path> ... <expression> ...` with `-name`, `-iname`, `-print`, `-print0`
/// and `-a`/`-and`; matches are printed in pre-order.
pub async fn find(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let split = args.iter().position(|a| a.starts_with('-')).unwrap_or(args.len());
    let expression = args.split_off(split);
    if args.is_empty() {
        args.push(".".to_string());
    }
    let mut tests = Vec::new();
    let mut print0 = false;
    let mut words = expression.into_iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-name" | "-iname" => {
                let ignore_case = word == "-iname";
                let pattern =
                    words.next().ok_or_else(|| ShellError::Usage(format!("Missing argument to {word}")))?;
                let pattern = if ignore_case { pattern.to_lowercase() } else { pattern };
                let glob = GlobPattern::compile(&pattern).map_err(ShellError::Usage)?;
                tests.push(FindTest::Name { glob, ignore_case });
            }
            "-print" => {}
            "-print0" => print0 = true,
            "-a" | "-and" => {}
            other => return Err(ShellError::Usage(format!("Unexpected argument: {other}"))),
        }
    }
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        for found in walk(shell, item).await? {
            if tests.iter().all(|test| find_matches(test, &found)) {
                if print0 {
                    shell.print(&format!("{}\0", found.display));
                } else {
                    shell.println(&found.display);
                }
            }
        }
    }
    Ok(0)
}

fn find_matches(test: &FindTest, item: &PathItem) -> bool {
    let name = ringfs_common::path::file_name(&item.path);
    match test {
        FindTest::Name { glob, ignore_case: true } => glob.matches(&name.to_lowercase()),
        FindTest::Name { glob, ignore_case: false } => glob.matches(name),
    }
}
