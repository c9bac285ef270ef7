//! One function per FsShell command. Each returns the exit code it wants when it
//! finishes normally (0; per-item failures are counted by `Shell::report` and turn it
//! into 1), or a command-level error (usage: 255; others: 1).

mod info;
mod ls;
mod modify;
mod transfer;

use super::paths::{expand, PathItem};
use super::{Shell, ShellError};

/// Runs command `name` (without its dash) with its arguments.
pub async fn dispatch(shell: &mut Shell, name: &str, args: Vec<String>) -> Result<i32, ShellError> {
    match name {
        "ls" => ls::ls(shell, args).await,
        "mkdir" => modify::mkdir(shell, args).await,
        "rm" => modify::rm(shell, args).await,
        "rmdir" => modify::rmdir(shell, args).await,
        "mv" => modify::mv(shell, args).await,
        "cp" => transfer::cp(shell, args).await,
        "touchz" => modify::touchz(shell, args).await,
        "touch" => modify::touch(shell, args).await,
        "chmod" => modify::chmod(shell, args).await,
        "chown" => modify::chown(shell, args, false).await,
        "chgrp" => modify::chown(shell, args, true).await,
        "setrep" => modify::setrep(shell, args).await,
        "truncate" => modify::truncate(shell, args).await,
        "expunge" => modify::expunge(shell, args).await,
        "concat" => modify::concat(shell, args).await,
        "put" | "copyFromLocal" => transfer::put(shell, args, false).await,
        "moveFromLocal" => transfer::put(shell, args, true).await,
        "get" | "copyToLocal" => transfer::get(shell, args).await,
        "cat" => transfer::cat(shell, args, false).await,
        "text" => transfer::cat(shell, args, true).await,
        "head" => transfer::head(shell, args).await,
        "tail" => transfer::tail(shell, args).await,
        "getmerge" => transfer::getmerge(shell, args).await,
        "appendToFile" => transfer::append_to_file(shell, args).await,
        "checksum" => info::checksum(shell, args).await,
        "du" => info::du(shell, args).await,
        "count" => info::count(shell, args).await,
        "stat" => info::stat(shell, args).await,
        "test" => info::test(shell, args).await,
        "df" => info::df(shell, args).await,
        "find" => info::find(shell, args).await,
        "usage" | "help" => {
            let text = super::usage_text(&args)?;
            print!("{text}");
            Ok(0)
        }
        other => Err(ShellError::Usage(format!("-{other}: Unknown command"))),
    }
}

/// Expands every argument, reporting globs that match nothing at once (as FsShell's
/// expandArguments does) and keeping missing plain paths for their turn.
pub async fn expand_all(shell: &mut Shell, args: &[String]) -> Result<Vec<PathItem>, ShellError> {
    let mut items = Vec::new();
    for arg in args {
        match expand(shell, arg).await {
            Ok(expanded) => items.extend(expanded),
            Err(error @ ShellError::Path { .. }) => shell.report(&error),
            Err(error) => return Err(error),
        }
    }
    Ok(items)
}

/// Reports a missing item as "No such file or directory" (FsShell's default
/// processNonexistentPath), in its turn among the others; true when it was missing.
pub fn reported_missing(shell: &mut Shell, item: &PathItem) -> bool {
    if item.exists() {
        return false;
    }
    shell.report(&ShellError::not_found(&item.display));
    true
}

/// Reports `result`'s error for `item`, if any: connection-level errors end the command.
pub fn report_item(shell: &mut Shell, result: Result<(), ShellError>) -> Result<(), ShellError> {
    match result {
        Ok(()) => Ok(()),
        Err(error @ ShellError::Usage(_)) => Err(error),
        Err(error) => {
            shell.report(&error);
            Ok(())
        }
    }
}

/// Items of `item`'s subtree in pre-order (the item first), for `-R` walks.
pub async fn walk(shell: &mut Shell, item: PathItem) -> Result<Vec<PathItem>, ShellError> {
    let mut out = Vec::new();
    let mut stack = vec![item];
    while let Some(item) = stack.pop() {
        let is_dir = item.is_dir();
        out.push(item.clone());
        if is_dir {
            let mut children = super::children(shell, &item).await?;
            children.reverse();
            stack.extend(children);
        }
    }
    Ok(out)
}
