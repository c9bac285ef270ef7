//! Commands that change the namespace: `-mkdir -rm -rmdir -mv -touchz -touch -chmod
//! -chown -chgrp -setrep -truncate -expunge -concat`.

use std::time::Duration;

use ringfs_client::DfsClient;

use super::super::options::CommandFormat;
use super::super::paths::{expand, PathItem};
use super::super::{Shell, ShellError, EXISTS, IO_ERROR, IS_DIR, NOT_DIR, NOT_EMPTY, NOT_FOUND};
use super::{expand_all, report_item, reported_missing, walk};

/// How often `-setrep -w` looks at block locations (Hadoop: 10 s).
const SETREP_WAIT_POLL: Duration = Duration::from_secs(10);
/// How often `-truncate -w` looks at the file (Hadoop: 1 s).
const TRUNCATE_WAIT_POLL: Duration = Duration::from_secs(1);
/// Permission of trash directories (TrashPolicyDefault.PERMISSION).
const TRASH_DIR_PERMISSION: u16 = 0o700;

/// `-mkdir [-p] <path> ...`.
pub async fn mkdir(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let opts =
        CommandFormat { min_args: 1, max_args: usize::MAX, flags: &["p"], valued: &[] }.parse(&mut args)?;
    let parents = opts.has("p");
    for item in expand_all(shell, &args).await? {
        let result = mkdir_one(shell, &item, parents).await;
        report_item(shell, result)?;
    }
    Ok(0)
}

async fn mkdir_one(shell: &mut Shell, item: &PathItem, parents: bool) -> Result<(), ShellError> {
    if let Some(stat) = &item.stat {
        if !stat.is_dir() {
            return Err(ShellError::path(&item.display, NOT_DIR));
        }
        if !parents {
            return Err(ShellError::path(&item.display, EXISTS));
        }
        return Ok(());
    }
    let client = shell.client(&item.authority).await?;
    if !parents && item.path != "/" {
        let parent = ringfs_common::path::parent(&item.path);
        if client.namenode().get_file_info(parent).await?.is_none() {
            return Err(ShellError::path(&item.qualified_parent(), NOT_FOUND));
        }
    }
    if !client.namenode().mkdirs(&item.path, ringfs_client::dfs::DIR_PERMISSION_DEFAULT, true).await? {
        return Err(ShellError::path(&item.display, IO_ERROR));
    }
    Ok(())
}

/// The trash interval in minutes: the namenode's when set, else the client's
/// `fs.trash.interval` (TrashPolicyDefault).
async fn trash_interval_minutes(shell: &Shell, client: &DfsClient) -> Result<f64, ShellError> {
    let server = client.server_defaults().await?.trash_interval.unwrap_or(0);
    if server != 0 {
        return Ok(server as f64);
    }
    shell.conf().get_f64("fs.trash.interval").map_err(|e| ShellError::Message(e.to_string()))
}

/// `-rm [-f] [-r|-R] [-skipTrash] [-safely] <src> ...`.
pub async fn rm(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let format = CommandFormat {
        min_args: 1,
        max_args: usize::MAX,
        flags: &["f", "r", "R", "skipTrash", "safely"],
        valued: &[],
    };
    let opts = format.parse(&mut args)?;
    let force = opts.has("f");
    let recursive = opts.has("r") || opts.has("R");
    let mut items = Vec::new();
    for arg in &args {
        match expand(shell, arg).await {
            Ok(expanded) => items.extend(expanded),
            Err(ShellError::Path { .. }) if force => {}
            Err(error @ ShellError::Path { .. }) => shell.report(&error),
            Err(error) => return Err(error),
        }
    }
    for item in items {
        let result = rm_one(shell, &item, recursive, force, opts.has("skipTrash")).await;
        report_item(shell, result)?;
    }
    Ok(0)
}

async fn rm_one(
    shell: &mut Shell,
    item: &PathItem,
    recursive: bool,
    force: bool,
    skip_trash: bool,
) -> Result<(), ShellError> {
    let Some(stat) = &item.stat else {
        return if force { Ok(()) } else { Err(ShellError::not_found(&item.display)) };
    };
    if stat.is_dir() && !recursive {
        return Err(ShellError::path(&item.display, IS_DIR));
    }
    let client = shell.client(&item.authority).await?;
    if !skip_trash && move_to_trash(shell, &client, item).await? {
        return Ok(());
    }
    if !client.namenode().delete(&item.path, recursive).await? {
        return Err(ShellError::path(&item.display, IO_ERROR));
    }
    shell.println(&format!("Deleted {}", item.display));
    Ok(())
}

/// TrashPolicyDefault.moveToTrash: false when trash is off or the path is already in
/// the trash (the caller then deletes it).
async fn move_to_trash(shell: &mut Shell, client: &DfsClient, item: &PathItem) -> Result<bool, ShellError> {
    if trash_interval_minutes(shell, client).await? <= 0.0 {
        return Ok(false);
    }
    let trash_root = format!("/user/{}/.Trash", shell.user());
    if item.path == trash_root || item.path.starts_with(&format!("{trash_root}/")) {
        return Ok(false);
    }
    let user_home = ringfs_common::path::parent(&trash_root);
    if item.path == "/" || user_home == item.path || user_home.starts_with(&format!("{}/", item.path)) {
        return Err(ShellError::Message(format!(
            "Cannot move \"{}\" to the trash, as it contains the trash. Consider using -skipTrash option",
            item.qualified()
        )));
    }
    let current = format!("{trash_root}/Current");
    let base = format!("{current}{}", ringfs_common::path::parent(&item.path));
    let namenode = client.namenode();
    let failed = |e: ringfs_client::DfsError| {
        ShellError::Message(format!(
            "Failed to move to trash: {}: {}. Consider using -skipTrash option",
            item.qualified(),
            super::super::ShellError::from(e).message()
        ))
    };
    if !namenode.mkdirs(&base, TRASH_DIR_PERMISSION, true).await.map_err(failed)? {
        shell.warn(&format!("Can't create(mkdir) trash directory: {base}"));
        return Ok(false);
    }
    let original = format!("{current}{}", item.path);
    let mut target = original.clone();
    while namenode.get_file_info(&target).await.map_err(failed)?.is_some() {
        target = format!("{original}{}", ringfs_client::time::now_ms());
    }
    namenode.rename2(&item.path, &target, false, true).await.map_err(failed)?;
    let uri = Shell::fs_uri(&item.authority);
    let _ = std::io::Write::flush(shell.out());
    eprintln!("Moved: '{}' to trash at: {uri}{current}", item.qualified());
    Ok(true)
}

/// `-rmdir [--ignore-fail-on-non-empty] <dir> ...`.
pub async fn rmdir(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let format = CommandFormat {
        min_args: 1,
        max_args: usize::MAX,
        flags: &["-ignore-fail-on-non-empty"],
        valued: &[],
    };
    let opts = format.parse(&mut args)?;
    let ignore_non_empty = opts.has("-ignore-fail-on-non-empty");
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        let result = async {
            if !item.is_dir() {
                return Err(ShellError::path(&item.display, NOT_DIR));
            }
            let client = shell.client(&item.authority).await?;
            let page = client.namenode().get_listing_page(&item.path, &[], false).await?;
            if page.is_some_and(|p| !p.partial_listing.is_empty()) {
                return if ignore_non_empty {
                    Ok(())
                } else {
                    Err(ShellError::path(&item.display, NOT_EMPTY))
                };
            }
            if !client.namenode().delete(&item.path, false).await? {
                return Err(ShellError::path(&item.display, IO_ERROR));
            }
            Ok(())
        }
        .await;
        report_item(shell, result)?;
    }
    Ok(0)
}

/// The destination of `-mv`/`-cp`/`-put`: exactly one match of the last argument.
pub async fn destination(shell: &mut Shell, arg: &str) -> Result<PathItem, ShellError> {
    let mut items = expand(shell, arg).await?;
    match items.len() {
        1 => Ok(items.remove(0)),
        _ => Err(ShellError::path(arg, "Too many matches")),
    }
}

/// CommandWithDestination's checks: several sources need an existing directory; one
/// source needs a directory, a missing path with an existing parent, or (with
/// `overwrite`) a file.
pub async fn check_destination(
    shell: &mut Shell,
    target: &PathItem,
    sources: usize,
    overwrite: bool,
) -> Result<(), ShellError> {
    if sources > 1 {
        match &target.stat {
            None => return Err(ShellError::not_found(&target.display)),
            Some(stat) if !stat.is_dir() => return Err(ShellError::path(&target.display, NOT_DIR)),
            Some(_) => {}
        }
    } else if let Some(stat) = &target.stat {
        if !stat.is_dir() && !overwrite {
            return Err(ShellError::path(&target.display, EXISTS));
        }
    } else {
        let client = shell.client(&target.authority).await?;
        let parent = ringfs_common::path::parent(&target.path);
        if client.namenode().get_file_info(parent).await?.is_none() {
            return Err(ShellError::Path {
                path: target.display.clone(),
                target: None,
                message: NOT_FOUND.to_string(),
                qualified: Some(target.qualified()),
            });
        }
    }
    Ok(())
}

/// Where `source` goes: into `target` when it is a directory (looked up, as Java's
/// getPathDataForChild does), else `target` itself.
pub async fn target_for(
    shell: &mut Shell,
    target: &PathItem,
    source_name: &str,
) -> Result<PathItem, ShellError> {
    if !target.is_dir() {
        return Ok(target.clone());
    }
    let path =
        if target.path == "/" { format!("/{source_name}") } else { format!("{}/{source_name}", target.path) };
    let client = shell.client(&target.authority).await?;
    let stat = client.namenode().get_file_info(&path).await?;
    let mut child = target.sibling(&path, shell.cwd(), stat);
    child.display = if target.display.ends_with('/') {
        format!("{}{source_name}", target.display)
    } else if target.display == "." {
        source_name.to_string()
    } else {
        format!("{}/{source_name}", target.display)
    };
    Ok(child)
}

/// `-mv <src> ... <dst>`.
pub async fn mv(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    CommandFormat { min_args: 2, max_args: usize::MAX, flags: &[], valued: &[] }.parse(&mut args)?;
    let target_arg = args.pop().expect("at least two arguments");
    let target = match destination(shell, &target_arg).await {
        Ok(target) => target,
        Err(error) => {
            shell.report(&error);
            return Ok(1);
        }
    };
    let sources = expand_all(shell, &args).await?;
    if let Err(error) = check_destination(shell, &target, sources.len(), false).await {
        shell.report(&error);
        return Ok(1);
    }
    for source in sources {
        let result = async {
            if !source.exists() {
                return Err(ShellError::not_found(&source.display));
            }
            if source.authority != target.authority {
                return Err(ShellError::path(&source.display, "Does not match target filesystem"));
            }
            let destination =
                target_for(shell, &target, ringfs_common::path::file_name(&source.path)).await?;
            check_not_into_itself(&source, &destination)?;
            let client = shell.client(&destination.authority).await?;
            if destination.exists() {
                return Err(ShellError::path(&destination.display, EXISTS));
            }
            if !client.namenode().rename(&source.path, &destination.path).await? {
                return Err(ShellError::path(&source.display, IO_ERROR));
            }
            Ok(())
        }
        .await;
        report_item(shell, result)?;
    }
    Ok(0)
}

/// A directory cannot be moved or copied onto or under itself.
pub fn check_not_into_itself(source: &PathItem, destination: &PathItem) -> Result<(), ShellError> {
    if !source.is_dir() {
        return Ok(());
    }
    if destination.path == source.path {
        return Err(ShellError::Path {
            path: source.display.clone(),
            target: Some(destination.qualified()),
            message: "are identical".to_string(),
            qualified: None,
        });
    }
    let prefix = if source.path == "/" { "/".to_string() } else { format!("{}/", source.path) };
    if destination.path.starts_with(&prefix) {
        return Err(ShellError::Path {
            path: source.display.clone(),
            target: Some(destination.display.clone()),
            message: "is a subdirectory of itself".to_string(),
            qualified: None,
        });
    }
    Ok(())
}

/// `-touchz <path> ...`: create empty files; an existing file must be empty.
pub async fn touchz(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    CommandFormat { min_args: 1, max_args: usize::MAX, flags: &[], valued: &[] }.parse(&mut args)?;
    for item in expand_all(shell, &args).await? {
        let result = async {
            match &item.stat {
                Some(stat) if stat.is_dir() => return Err(ShellError::path(&item.display, IS_DIR)),
                Some(stat) if stat.length != 0 => {
                    return Err(ShellError::path(&item.display, "Not a zero-length file"));
                }
                Some(_) => {}
                None => check_parent_exists(shell, &item).await?,
            }
            create_empty(shell, &item).await
        }
        .await;
        report_item(shell, result)?;
    }
    Ok(0)
}

/// Touchz/Touch: a missing parent is "No such file or directory" with the qualified path.
async fn check_parent_exists(shell: &mut Shell, item: &PathItem) -> Result<(), ShellError> {
    let client = shell.client(&item.authority).await?;
    let parent = ringfs_common::path::parent(&item.path);
    match client.namenode().get_file_info(parent).await? {
        Some(stat) if stat.is_dir() => Ok(()),
        _ => Err(ShellError::Path {
            path: item.display.clone(),
            target: None,
            message: NOT_FOUND.to_string(),
            qualified: Some(item.qualified()),
        }),
    }
}

async fn create_empty(shell: &mut Shell, item: &PathItem) -> Result<(), ShellError> {
    let client = shell.client(&item.authority).await?;
    let writer = client.create(&item.path, true, None, None).await?;
    writer.close().await?;
    Ok(())
}

/// `-touch [-a] [-m] [-t yyyyMMdd:HHmmss] [-c] <path> ...`.
pub async fn touch(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let format = CommandFormat { min_args: 1, max_args: usize::MAX, flags: &["a", "m", "c"], valued: &["t"] };
    let opts = format.parse(&mut args)?;
    let time_ms = match opts.value("t") {
        Some(text) if !text.is_empty() => parse_touch_time(text)?,
        _ => ringfs_client::time::now_ms() as u64,
    };
    let (access, modification) = match (opts.has("a"), opts.has("m")) {
        (false, false) => (true, true),
        (a, m) => (a, m),
    };
    for item in expand_all(shell, &args).await? {
        let result = async {
            if item.stat.is_none() {
                if opts.has("c") {
                    return Ok(());
                }
                check_parent_exists(shell, &item).await?;
                create_empty(shell, &item).await?;
            }
            let client = shell.client(&item.authority).await?;
            let mtime = modification.then_some(time_ms);
            let atime = access.then_some(time_ms);
            client.namenode().set_times(&item.path, mtime, atime).await?;
            Ok(())
        }
        .await;
        report_item(shell, result)?;
    }
    Ok(0)
}

/// `yyyyMMdd:HHmmss` in local time.
fn parse_touch_time(text: &str) -> Result<u64, ShellError> {
    let bad = || ShellError::Usage(format!("Unable to parse the specified timestamp {text}"));
    let (date, time) = text.split_once(':').ok_or_else(bad)?;
    if date.len() != 8 || time.len() != 6 {
        return Err(bad());
    }
    let number = |s: &str| s.parse::<u32>().map_err(|_| bad());
    let parts = [
        number(&date[..4])?,
        number(&date[4..6])?,
        number(&date[6..])?,
        number(&time[..2])?,
        number(&time[2..4])?,
        number(&time[4..])?,
    ];
    ringfs_client::time::local_to_epoch_ms(parts).ok_or_else(bad)
}

/// A parsed `-chmod` mode: octal, or Hadoop's symbolic `[ugoa]*[+-=]+[rwxXt]+` list.
#[derive(Debug, Clone, PartialEq)]
pub struct ChmodMode {
    /// Per class (sticky, user, group, others): operator and bits (8 = X).
    classes: [(char, u16); 4],
}

impl ChmodMode {
    pub fn parse(mode: &str) -> Result<ChmodMode, ShellError> {
        let bad = || ShellError::Usage(format!("chmod : mode '{mode}' does not match the expected pattern."));
        if let Some(octal) = parse_octal(mode) {
            return Ok(ChmodMode {
                classes: [
                    ('=', (octal >> 9) & 1),
                    ('=', (octal >> 6) & 7),
                    ('=', (octal >> 3) & 7),
                    ('=', octal & 7),
                ],
            });
        }
        let mut classes = [('+', 0u16); 4];
        let chars: Vec<char> = mode.chars().collect();
        let mut pos = 0;
        loop {
            while pos < chars.len() && chars[pos].is_whitespace() {
                pos += 1;
            }
            let who_start = pos;
            while pos < chars.len() && "ugoa".contains(chars[pos]) {
                pos += 1;
            }
            let who: String = chars[who_start..pos].iter().collect();
            let op_start = pos;
            while pos < chars.len() && "+-=".contains(chars[pos]) {
                pos += 1;
            }
            if pos == op_start {
                return Err(bad());
            }
            let op = chars[pos - 1];
            let perm_start = pos;
            while pos < chars.len() && "rwxXt".contains(chars[pos]) {
                pos += 1;
            }
            if pos == perm_start {
                return Err(bad());
            }
            let mut bits = 0u16;
            let mut sticky = false;
            for c in &chars[perm_start..pos] {
                match c {
                    'r' => bits |= 4,
                    'w' => bits |= 2,
                    'x' => bits |= 1,
                    'X' => bits |= 8,
                    _ => sticky = true,
                }
            }
            let separator_start = pos;
            while pos < chars.len() && (chars[pos] == ',' || chars[pos].is_whitespace()) {
                pos += 1;
            }
            let comma = chars[separator_start..pos].contains(&',');
            let (mut user, mut group, mut others) = (who.contains('u'), who.contains('g'), who.contains('o'));
            if !(user || group || others) {
                (user, group, others) = (true, true, true);
            }
            if user {
                classes[1] = (op, bits);
            }
            if group {
                classes[2] = (op, bits);
            }
            if others {
                classes[3] = (op, bits);
                classes[0] = (op, u16::from(sticky));
            }
            if pos >= chars.len() {
                break;
            }
            if !comma {
                return Err(bad());
            }
        }
        Ok(ChmodMode { classes })
    }

    /// The new permission of a file with `existing` bits (PermissionParser).
    pub fn apply(&self, existing: u16, is_dir: bool) -> u16 {
        let exe_ok = is_dir || existing & 0o111 != 0;
        let segment = |index: usize, existing: u16| {
            let (op, mode) = self.classes[index];
            let cap_x = mode & 8 != 0;
            let mode = if cap_x { (mode & !8) | 1 } else { mode };
            let mut result = match op {
                '+' => mode | existing,
                '-' => !mode & existing,
                _ => mode,
            };
            if cap_x && !exe_ok && result & 1 != 0 && existing & 1 == 0 {
                result &= !1;
            }
            result & 7
        };
        (segment(0, (existing >> 9) & 1) & 1) << 9
            | segment(1, (existing >> 6) & 7) << 6
            | segment(2, (existing >> 3) & 7) << 3
            | segment(3, existing & 7)
    }
}

/// `[+]?[01]?[0-7]{3}` with optional spaces.
fn parse_octal(mode: &str) -> Option<u16> {
    let trimmed = mode.trim();
    let digits = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let valid = matches!(digits.len(), 3 | 4)
        && digits.chars().all(|c| ('0'..='7').contains(&c))
        && (digits.len() == 3 || digits.starts_with('0') || digits.starts_with('1'));
    if !valid {
        return None;
    }
    u16::from_str_radix(digits, 8).ok()
}

/// `-chmod [-R] <MODE[,MODE]... | OCTALMODE> PATH...`.
pub async fn chmod(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let opts =
        CommandFormat { min_args: 2, max_args: usize::MAX, flags: &["R"], valued: &[] }.parse(&mut args)?;
    let mode = ChmodMode::parse(&args.remove(0))?;
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        let items = if opts.has("R") { walk(shell, item).await? } else { vec![item] };
        for item in items {
            let stat = item.stat.as_ref().expect("walked items exist");
            let permission = mode.apply(stat.permission, stat.is_dir());
            if permission == stat.permission {
                continue;
            }
            let result = async {
                let client = shell.client(&item.authority).await?;
                client.namenode().set_permission(&item.path, permission).await.map_err(|e| {
                    let message = ShellError::from(e).message();
                    ShellError::Message(format!("changing permissions of '{}': {message}", item.display))
                })
            }
            .await;
            report_item(shell, result)?;
        }
    }
    Ok(0)
}

fn is_owner_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./@\\$".contains(c)
}

/// `[owner][:[group]]` as ChownParser reads it.
pub fn parse_owner(spec: &str) -> Result<(Option<String>, Option<String>), ShellError> {
    let bad = || ShellError::Usage(format!("'{spec}' does not match expected pattern for [owner][:group]."));
    let trimmed = spec.trim();
    let (owner, group) = match trimmed.split_once(':') {
        Some((owner, group)) => (owner, Some(group)),
        None => (trimmed, None),
    };
    if !owner.chars().all(is_owner_char) || !group.unwrap_or("").chars().all(is_owner_char) {
        return Err(bad());
    }
    let owner = (!owner.is_empty()).then(|| owner.to_string());
    let group = group.filter(|g| !g.is_empty()).map(str::to_string);
    if owner.is_none() && group.is_none() {
        return Err(ShellError::Usage(format!("'{spec}' does not specify owner or group.")));
    }
    Ok((owner, group))
}

/// `-chown [-R] [OWNER][:[GROUP]] PATH...` and `-chgrp [-R] GROUP PATH...`.
pub async fn chown(shell: &mut Shell, mut args: Vec<String>, group_only: bool) -> Result<i32, ShellError> {
    let opts =
        CommandFormat { min_args: 2, max_args: usize::MAX, flags: &["R"], valued: &[] }.parse(&mut args)?;
    let spec = args.remove(0);
    let (owner, group) = if group_only {
        let trimmed = spec.trim();
        if trimmed.is_empty() || !trimmed.chars().all(is_owner_char) {
            return Err(ShellError::Usage(format!("'{spec}' does not match expected pattern for group")));
        }
        (None, Some(trimmed.to_string()))
    } else {
        parse_owner(&spec)?
    };
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        let items = if opts.has("R") { walk(shell, item).await? } else { vec![item] };
        for item in items {
            let stat = item.stat.as_ref().expect("walked items exist");
            let new_owner = owner.as_deref().filter(|o| *o != stat.owner);
            let new_group = group.as_deref().filter(|g| *g != stat.group);
            if new_owner.is_none() && new_group.is_none() {
                continue;
            }
            let result = async {
                let client = shell.client(&item.authority).await?;
                client.namenode().set_owner(&item.path, new_owner, new_group).await.map_err(|e| {
                    let message = ShellError::from(e).message();
                    ShellError::Message(format!("changing ownership of '{}': {message}", item.display))
                })
            }
            .await;
            report_item(shell, result)?;
        }
    }
    Ok(0)
}

/// `-setrep [-R] [-w] <rep> <path> ...`: every file under the paths.
pub async fn setrep(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let opts = CommandFormat { min_args: 2, max_args: usize::MAX, flags: &["R", "w"], valued: &[] }
        .parse(&mut args)?;
    let text = args.remove(0);
    let replication: i16 = text.parse().map_err(|_| {
        shell.warn("Illegal replication, a positive integer expected");
        ShellError::Usage(format!("For input string: \"{text}\""))
    })?;
    if replication < 1 {
        return Err(ShellError::Usage("replication must be >= 1".to_string()));
    }
    let replication = replication as u16;
    let mut waiting = Vec::new();
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        for item in walk(shell, item).await? {
            if !item.stat.as_ref().is_some_and(|s| s.is_file()) {
                continue;
            }
            let client = shell.client(&item.authority).await?;
            match client.namenode().set_replication(&item.path, replication).await {
                Ok(true) => {
                    shell.println(&format!("Replication {replication} set: {}", item.display));
                    if opts.has("w") {
                        waiting.push(item);
                    }
                }
                Ok(false) => shell
                    .report(&ShellError::Message(format!("Could not set replication for: {}", item.display))),
                Err(e) => shell.report(&e.into()),
            }
        }
    }
    for item in waiting {
        wait_for_replication(shell, &item, replication).await?;
    }
    Ok(0)
}

async fn wait_for_replication(
    shell: &mut Shell,
    item: &PathItem,
    replication: u16,
) -> Result<(), ShellError> {
    shell.print(&format!("Waiting for {} ...", item.display));
    let _ = std::io::Write::flush(shell.out());
    let client = shell.client(&item.authority).await?;
    let mut warned = false;
    loop {
        let located = client.namenode().get_block_locations(&item.path, 0, i64::MAX as u64).await?;
        let blocks = located.map(|l| l.blocks).unwrap_or_default();
        let lagging = blocks.iter().map(|b| b.locs.len()).find(|count| *count != usize::from(replication));
        match lagging {
            None => break,
            Some(current) => {
                if !warned && current > usize::from(replication) {
                    shell.println(
                        "\nWARNING: the waiting time may be long for DECREASING the number of replications.",
                    );
                    warned = true;
                }
            }
        }
        shell.print(".");
        let _ = std::io::Write::flush(shell.out());
        tokio::time::sleep(SETREP_WAIT_POLL).await;
    }
    shell.println(" done");
    Ok(())
}

/// `-truncate [-w] <length> <path> ...`.
pub async fn truncate(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let opts =
        CommandFormat { min_args: 2, max_args: usize::MAX, flags: &["w"], valued: &[] }.parse(&mut args)?;
    let text = args.remove(0);
    let length: i64 = text.parse().map_err(|_| {
        shell.warn("Illegal length, a non-negative integer expected");
        ShellError::Usage(format!("For input string: \"{text}\""))
    })?;
    if length < 0 {
        return Err(ShellError::Usage("length must be >= 0".to_string()));
    }
    let length = length as u64;
    let mut waiting = Vec::new();
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        let stat = item.stat.as_ref().expect("existing");
        if stat.is_dir() {
            shell.report(&ShellError::path(&item.display, IS_DIR));
            continue;
        }
        if length > stat.length {
            return Err(ShellError::Usage(format!(
                "Cannot truncate to a larger file size. Current size: {}, truncate size: {length}.",
                stat.length
            )));
        }
        let client = shell.client(&item.authority).await?;
        match client.namenode().truncate(&item.path, length).await {
            Ok(true) => shell.println(&format!("Truncated {} to length: {length}", item.display)),
            Ok(false) if opts.has("w") => waiting.push(item),
            Ok(false) => shell.println(&format!(
                "Truncating {} to length: {length}. Wait for block recovery to complete before further updating this file.",
                item.display
            )),
            Err(e) => shell.report(&e.into()),
        }
    }
    for item in waiting {
        shell.println(&format!("Waiting for {} ...", item.display));
        let _ = std::io::Write::flush(shell.out());
        let client = shell.client(&item.authority).await?;
        while !client.namenode().is_file_closed(&item.path).await? {
            tokio::time::sleep(TRUNCATE_WAIT_POLL).await;
        }
        shell.println(&format!("Truncated {} to length: {length}", item.display));
    }
    Ok(0)
}

/// `-expunge [-immediate]`: deletes trash checkpoints older than the trash interval
/// (all with `-immediate`) and checkpoints `Current` (TrashPolicyDefault).
pub async fn expunge(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let opts = CommandFormat { min_args: 0, max_args: 0, flags: &["immediate"], valued: &["fs"] }
        .parse(&mut args)?;
    let client = match opts.value("fs").filter(|v| !v.is_empty()) {
        Some(uri) => {
            let authority = ringfs_client::uri_authority(uri)
                .ok_or_else(|| ShellError::Usage(format!("{uri} is not an hdfs:// URI")))?;
            shell.client(&authority).await?
        }
        None => shell.default_client().await?,
    };
    let interval_minutes = trash_interval_minutes(shell, &client).await?;
    if interval_minutes <= 0.0 {
        return Ok(0);
    }
    let namenode = client.namenode();
    let trash_root = format!("/user/{}/.Trash", shell.user());
    let Some(entries) = namenode.get_listing(&trash_root).await? else {
        return Ok(0);
    };
    let now_ms = ringfs_client::time::now_ms();
    let interval_ms = (interval_minutes * 60_000.0) as i64;
    let current = format!("{trash_root}/Current");
    if entries.iter().any(|e| e.path == current) {
        let checkpoint =
            format!("{trash_root}/{}", ringfs_client::time::format_local(now_ms, "%y%m%d%H%M%S"));
        let mut target = checkpoint.clone();
        let mut attempt = 0;
        while namenode.get_file_info(&target).await?.is_some() {
            attempt += 1;
            target = format!("{checkpoint}-{attempt}");
        }
        if namenode.rename(&current, &target).await? {
            tracing::info!(checkpoint = %target, "created trash checkpoint");
        }
    }
    for entry in entries {
        if entry.path == current {
            continue;
        }
        let name = entry.name();
        let Some(created_ms) = checkpoint_time_ms(name) else {
            shell.warn(&format!("Unexpected item in trash: {}. Ignoring.", entry.path));
            continue;
        };
        if opts.has("immediate") || now_ms - created_ms > interval_ms {
            if namenode.delete(&entry.path, true).await? {
                tracing::info!(checkpoint = %entry.path, "deleted trash checkpoint");
            } else {
                shell.warn(&format!("Couldn't delete checkpoint: {} Ignoring.", entry.path));
            }
        }
    }
    if opts.has("immediate") {
        // -immediate also empties what was just checkpointed.
        if let Some(rest) = namenode.get_listing(&trash_root).await? {
            for entry in rest {
                if entry.path != current && checkpoint_time_ms(entry.name()).is_some() {
                    namenode.delete(&entry.path, true).await?;
                }
            }
        }
    }
    Ok(0)
}

/// The creation time of a checkpoint named `yyMMddHHmmss` (optionally `-N`).
fn checkpoint_time_ms(name: &str) -> Option<i64> {
    let stamp = name.split('-').next()?;
    if stamp.len() != 12 || !stamp.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| stamp[range].parse::<u32>().ok();
    let parts =
        [2000 + number(0..2)?, number(2..4)?, number(4..6)?, number(6..8)?, number(8..10)?, number(10..12)?];
    ringfs_client::time::local_to_epoch_ms(parts).map(|ms| ms as i64)
}

/// `-concat <target path> <src path> <src path> ...`.
pub async fn concat(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    CommandFormat { min_args: 2, max_args: usize::MAX, flags: &[], valued: &[] }.parse(&mut args)?;
    let target = destination(shell, &args.remove(0)).await?;
    let mut sources = Vec::new();
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        sources.push(item.path);
    }
    if !target.exists() {
        return Err(ShellError::not_found(&target.display));
    }
    let client = shell.client(&target.authority).await?;
    client.namenode().concat(&target.path, &sources).await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_modes() {
        let mode = ChmodMode::parse("700").unwrap();
        assert_eq!(mode.apply(0o644, false), 0o700);
        assert_eq!(ChmodMode::parse("1777").unwrap().apply(0o755, true), 0o1777);
        assert_eq!(ChmodMode::parse("0644").unwrap().apply(0o1777, true), 0o644);
        assert!(ChmodMode::parse("888").is_err());
        assert!(ChmodMode::parse("2755").is_err());
    }

    #[test]
    fn symbolic_modes_like_hadoop() {
        assert_eq!(ChmodMode::parse("g+w,o-r").unwrap().apply(0o700, false), 0o720);
        assert_eq!(ChmodMode::parse("a+X").unwrap().apply(0o720, false), 0o731);
        // X adds execute only for directories or files already executable by someone.
        assert_eq!(ChmodMode::parse("a+X").unwrap().apply(0o644, false), 0o644);
        assert_eq!(ChmodMode::parse("a+X").unwrap().apply(0o644, true), 0o755);
        assert_eq!(ChmodMode::parse("u=rwx").unwrap().apply(0o644, false), 0o744);
        assert_eq!(ChmodMode::parse("+t").unwrap().apply(0o777, true), 0o1777);
        assert_eq!(ChmodMode::parse("o-t").unwrap().apply(0o1777, true), 0o777);
        assert_eq!(ChmodMode::parse("-w").unwrap().apply(0o666, false), 0o444);
        // A later clause for the same class replaces the earlier one, as in Hadoop.
        assert_eq!(ChmodMode::parse("u+r,u+w").unwrap().apply(0o000, false), 0o200);
    }

    #[test]
    fn malformed_modes_are_usage_errors() {
        for bad in ["xyz", "u=rwx,go=", "u+", "+", "u+r g+w", ""] {
            let error = ChmodMode::parse(bad).unwrap_err();
            assert_eq!(error.message(), format!("chmod : mode '{bad}' does not match the expected pattern."));
        }
    }

    #[test]
    fn owner_specs() {
        assert_eq!(parse_owner("root:root").unwrap(), (Some("root".into()), Some("root".into())));
        assert_eq!(parse_owner(":grp").unwrap(), (None, Some("grp".into())));
        assert_eq!(parse_owner("usr:").unwrap(), (Some("usr".into()), None));
        assert_eq!(
            parse_owner("bad user").unwrap_err().message(),
            "'bad user' does not match expected pattern for [owner][:group]."
        );
        assert!(parse_owner(":").is_err());
    }

    #[test]
    fn checkpoint_names() {
        assert!(checkpoint_time_ms("261121163000").is_some());
        assert!(checkpoint_time_ms("261121163000-1").is_some());
        assert!(checkpoint_time_ms("Current").is_none());
    }
}
