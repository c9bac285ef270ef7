//! Commands that move file contents: `-put -copyFromLocal -moveFromLocal -get
//! -copyToLocal -cp -cat -text -head -tail -getmerge -appendToFile`.
//!
//! Copies go through `<target>._COPYING_` and a rename, as FsShell's do, so a failed
//! copy never leaves a partial file under the final name; the temporary file is
//! removed on failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringfs_client::{DfsClient, FileReader, FileWriter, WriteOptions};
use tokio::io::AsyncReadExt;

use super::super::glob::{has_wildcard, unescape, GlobPattern};
use super::super::options::CommandFormat;
use super::super::paths::PathItem;
use super::super::{children, Shell, ShellError, EXISTS, IO_ERROR, IS_DIR, NOT_DIR, NOT_FOUND};
use super::modify::{check_destination, check_not_into_itself, destination, target_for};
use super::{expand_all, report_item, reported_missing};

/// Copy buffer: large enough to fill many 64 KiB packets per write call.
const COPY_BUFFER_SIZE: usize = 1024 * 1024;
/// Suffix of the temporary file a copy writes before renaming it.
const COPYING_SUFFIX: &str = "._COPYING_";
/// What `-head` and `-tail` show: the first or last kilobyte.
const HEAD_TAIL_BYTES: u64 = 1024;
/// `-tail -f` polling interval without `-s` (Tail.followDelay).
const TAIL_FOLLOW_DELAY: Duration = Duration::from_millis(5000);

/// A local file or directory named on the command line.
#[derive(Debug, Clone)]
struct LocalItem {
    display: String,
    path: PathBuf,
    metadata: Option<std::fs::Metadata>,
}

impl LocalItem {
    fn new(display: String, path: PathBuf) -> LocalItem {
        let metadata = std::fs::metadata(&path).ok();
        LocalItem { display, path, metadata }
    }

    fn is_dir(&self) -> bool {
        self.metadata.as_ref().is_some_and(|m| m.is_dir())
    }

    fn exists(&self) -> bool {
        self.metadata.is_some()
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.display.clone())
    }

    fn child(&self, name: &str) -> LocalItem {
        let display = if self.display.ends_with('/') {
            format!("{}{name}", self.display)
        } else {
            format!("{}/{name}", self.display)
        };
        LocalItem::new(display, self.path.join(name))
    }
}

/// `file:///x`, `file:/x` and plain paths name local files.
fn local_path(arg: &str) -> String {
    if let Some(rest) = arg.strip_prefix("file://") {
        rest.to_string()
    } else if let Some(rest) = arg.strip_prefix("file:") {
        rest.to_string()
    } else {
        arg.to_string()
    }
}

/// Expands a local argument's glob; a plain path yields one item even if missing.
fn expand_local(arg: &str) -> Result<Vec<LocalItem>, ShellError> {
    let path = local_path(arg);
    if !has_wildcard(&path) {
        let plain = unescape(&path);
        return Ok(vec![LocalItem::new(unescape(arg), PathBuf::from(plain))]);
    }
    let absolute = path.starts_with('/');
    let mut candidates: Vec<String> = vec![if absolute { "/".to_string() } else { String::new() }];
    for component in path.split('/').filter(|c| !c.is_empty()) {
        let join = |base: &str, name: &str| {
            if base.is_empty() {
                name.to_string()
            } else if base.ends_with('/') {
                format!("{base}{name}")
            } else {
                format!("{base}/{name}")
            }
        };
        if !has_wildcard(component) {
            candidates = candidates.iter().map(|c| join(c, &unescape(component))).collect();
            continue;
        }
        let glob = GlobPattern::compile(component).map_err(ShellError::Message)?;
        let mut next = Vec::new();
        for candidate in &candidates {
            let dir = if candidate.is_empty() { "." } else { candidate.as_str() };
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            next.extend(names.into_iter().filter(|n| glob.matches(n)).map(|n| join(candidate, &n)));
        }
        candidates = next;
    }
    let found: Vec<LocalItem> = candidates
        .into_iter()
        .map(|c| LocalItem::new(c.clone(), PathBuf::from(c)))
        .filter(LocalItem::exists)
        .collect();
    if found.is_empty() {
        return Err(ShellError::not_found(arg));
    }
    Ok(found)
}

/// `-p[topax]` as CopyCommands reads it, taken out of the options.
#[derive(Debug, Default, Clone, Copy)]
struct Preserve {
    times: bool,
    ownership: bool,
    permission: bool,
}

fn take_preserve_option(args: &mut Vec<String>) -> Result<Preserve, ShellError> {
    let mut preserve = Preserve::default();
    let position = args
        .iter()
        .take_while(|a| a.starts_with('-') && a.as_str() != "-" && a.as_str() != "--")
        .position(|a| a.starts_with("-p"));
    if let Some(index) = position {
        let letters = args.remove(index)[2..].to_string();
        if letters.is_empty() {
            return Ok(Preserve { times: true, ownership: true, permission: true });
        }
        for letter in letters.chars() {
            match letter {
                't' => preserve.times = true,
                'o' => preserve.ownership = true,
                'p' | 'a' => preserve.permission = true,
                'x' => {}
                other => return Err(ShellError::Usage(format!("Illegal option -p{other}"))),
            }
        }
    }
    Ok(preserve)
}

/// `-put`/`-copyFromLocal`/`-moveFromLocal [-f] [-p] [-l] [-d] <localsrc> ... <dst>`.
pub async fn put(shell: &mut Shell, mut args: Vec<String>, move_sources: bool) -> Result<i32, ShellError> {
    let format = CommandFormat {
        min_args: 1,
        max_args: usize::MAX,
        flags: &["f", "p", "l", "d"],
        valued: &["t", "q"],
    };
    let opts = format.parse(&mut args)?;
    let options = CopyOptions {
        overwrite: opts.has("f"),
        direct: opts.has("d"),
        preserve: if opts.has("p") {
            Preserve { times: true, ownership: true, permission: true }
        } else {
            Preserve::default()
        },
        replication: opts.has("l").then_some(1),
    };
    let target_arg = if args.len() > 1 { args.pop().expect("checked") } else { ".".to_string() };
    let target = match destination(shell, &target_arg).await {
        Ok(target) => target,
        Err(error) => {
            shell.report(&error);
            return Ok(1);
        }
    };
    if args.len() == 1 && args[0] == "-" {
        let destination = target_for(shell, &target, "-").await?;
        let result = async {
            if destination.stat.as_ref().is_some_and(|s| s.is_dir() || !options.overwrite) {
                return Err(ShellError::path(&destination.display, EXISTS));
            }
            let mut stdin = tokio::io::stdin();
            copy_into_dfs(shell, &mut stdin, &destination, &options).await
        }
        .await;
        report_item(shell, result)?;
        return Ok(0);
    }
    let mut sources = Vec::new();
    for arg in &args {
        match expand_local(arg) {
            Ok(items) => sources.extend(items),
            Err(error) => shell.report(&error),
        }
    }
    if let Err(error) = check_destination(shell, &target, sources.len(), options.overwrite).await {
        shell.report(&error);
        return Ok(1);
    }
    for source in sources {
        if !source.exists() {
            shell.report(&ShellError::not_found(&source.display));
            continue;
        }
        let destination = match target_for(shell, &target, &source.name()).await {
            Ok(destination) => destination,
            Err(error) => {
                report_item(shell, Err(error))?;
                continue;
            }
        };
        let result = put_one(shell, &source, destination, &options).await;
        let succeeded = result.is_ok();
        report_item(shell, result)?;
        if succeeded && move_sources {
            let removed = if source.is_dir() {
                std::fs::remove_dir_all(&source.path)
            } else {
                std::fs::remove_file(&source.path)
            };
            if let Err(e) = removed {
                shell.report(&ShellError::Message(format!("`{}': {e}", source.display)));
            }
        }
    }
    Ok(0)
}

struct CopyOptions {
    overwrite: bool,
    direct: bool,
    preserve: Preserve,
    replication: Option<u16>,
}

fn put_one<'a>(
    shell: &'a mut Shell,
    source: &'a LocalItem,
    destination: PathItem,
    options: &'a CopyOptions,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ShellError>> + 'a>> {
    Box::pin(async move {
        if source.is_dir() {
            let destination = ensure_dfs_directory(shell, destination).await?;
            let mut names: Vec<String> = std::fs::read_dir(&source.path)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                let child_source = source.child(&name);
                let child_target = target_for(shell, &destination, &name).await?;
                let result = put_one(shell, &child_source, child_target, options).await;
                report_item(shell, result)?;
            }
            apply_local_attributes(shell, source, &destination, options.preserve).await?;
            return Ok(());
        }
        if destination.stat.as_ref().is_some_and(|s| s.is_dir() || !options.overwrite) {
            return Err(ShellError::path(&destination.display, EXISTS));
        }
        let mut file =
            tokio::fs::File::open(&source.path).await.map_err(|e| local_error(&source.display, e))?;
        copy_into_dfs(shell, &mut file, &destination, options).await?;
        apply_local_attributes(shell, source, &destination, options.preserve).await
    })
}

fn local_error(display: &str, error: std::io::Error) -> ShellError {
    match error.kind() {
        std::io::ErrorKind::NotFound => ShellError::not_found(display),
        std::io::ErrorKind::PermissionDenied => ShellError::path(display, "Permission denied"),
        _ => ShellError::Message(format!("`{display}': {error}")),
    }
}

/// The target directory of a recursive copy: created when missing.
async fn ensure_dfs_directory(shell: &mut Shell, destination: PathItem) -> Result<PathItem, ShellError> {
    let client = shell.client(&destination.authority).await?;
    match &destination.stat {
        Some(stat) if !stat.is_dir() => Err(ShellError::path(&destination.display, NOT_DIR)),
        Some(_) => Ok(destination),
        None => {
            if !client.mkdirs(&destination.path, None).await? {
                return Err(ShellError::path(&destination.display, IO_ERROR));
            }
            let stat = client.namenode().get_file_info(&destination.path).await?;
            Ok(PathItem { stat, ..destination })
        }
    }
}

/// Streams `input` into `destination` through `<destination>._COPYING_`.
async fn copy_into_dfs<R: tokio::io::AsyncRead + Unpin>(
    shell: &mut Shell,
    input: &mut R,
    destination: &PathItem,
    options: &CopyOptions,
) -> Result<(), ShellError> {
    let client = shell.client(&destination.authority).await?;
    let temporary = if options.direct {
        destination.path.clone()
    } else {
        format!("{}{COPYING_SUFFIX}", destination.path)
    };
    let write = WriteOptions { overwrite: true, replication: options.replication, ..WriteOptions::default() };
    let mut writer = client.create_with(&temporary, &write).await?;
    let copied = async {
        let mut buffer = vec![0u8; COPY_BUFFER_SIZE];
        loop {
            let count = input.read(&mut buffer).await?;
            if count == 0 {
                break;
            }
            writer.write_all(&buffer[..count]).await?;
        }
        writer.close().await?;
        Ok::<(), ShellError>(())
    }
    .await;
    finish_copy(&client, copied, &temporary, destination, options.direct).await
}

/// Renames the temporary file over the destination, or removes it after a failure.
async fn finish_copy(
    client: &DfsClient,
    copied: Result<(), ShellError>,
    temporary: &str,
    destination: &PathItem,
    direct: bool,
) -> Result<(), ShellError> {
    let namenode = client.namenode();
    if let Err(error) = copied {
        if namenode.get_file_info(temporary).await.ok().flatten().is_some() {
            let _ = namenode.delete(temporary, true).await;
        }
        return Err(error);
    }
    if direct {
        return Ok(());
    }
    if namenode.get_file_info(&destination.path).await?.is_some()
        && !namenode.delete(&destination.path, false).await?
    {
        let _ = namenode.delete(temporary, true).await;
        return Err(ShellError::path(&destination.display, IO_ERROR));
    }
    if !namenode.rename(temporary, &destination.path).await? {
        let _ = namenode.delete(temporary, true).await;
        return Err(ShellError::Path {
            path: format!("{}{COPYING_SUFFIX}", destination.display),
            target: Some(destination.display.clone()),
            message: IO_ERROR.to_string(),
            qualified: None,
        });
    }
    Ok(())
}

/// `-p`: the local file's times, mode and owner onto the copy.
async fn apply_local_attributes(
    shell: &mut Shell,
    source: &LocalItem,
    destination: &PathItem,
    preserve: Preserve,
) -> Result<(), ShellError> {
    use std::os::unix::fs::MetadataExt;
    let Some(metadata) = source.metadata.as_ref() else { return Ok(()) };
    let client = shell.client(&destination.authority).await?;
    let namenode = client.namenode();
    if preserve.times {
        let mtime = (metadata.mtime() * 1000 + metadata.mtime_nsec() / 1_000_000) as u64;
        let atime = (metadata.atime() * 1000 + metadata.atime_nsec() / 1_000_000) as u64;
        namenode.set_times(&destination.path, Some(mtime), Some(atime)).await?;
    }
    if preserve.permission {
        namenode.set_permission(&destination.path, (metadata.mode() & 0o1777) as u16).await?;
    }
    if preserve.ownership {
        let owner = local_name("/etc/passwd", metadata.uid());
        let group = local_name("/etc/group", metadata.gid());
        namenode.set_owner(&destination.path, owner.as_deref(), group.as_deref()).await?;
    }
    Ok(())
}

/// The name of a uid or gid from /etc/passwd or /etc/group (name:x:id:...).
fn local_name(database: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(database).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id_field = fields.nth(1)?;
        (id_field.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

/// `-get`/`-copyToLocal [-f] [-p] [-ignoreCrc] <src> ... <localdst>`.
pub async fn get(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let format = CommandFormat {
        min_args: 1,
        max_args: usize::MAX,
        flags: &["f", "p", "crc", "ignoreCrc"],
        valued: &["t", "q"],
    };
    let opts = format.parse(&mut args)?;
    if opts.has("crc") {
        return Err(ShellError::Usage("-crc (.crc side files) is not supported by ringfs".to_string()));
    }
    if opts.has("ignoreCrc") {
        shell.set_verify_checksum(false);
    }
    let target_arg = if args.len() > 1 { args.pop().expect("checked") } else { ".".to_string() };
    let target = LocalItem::new(target_arg.clone(), PathBuf::from(local_path(&target_arg)));
    let sources = expand_all(shell, &args).await?;
    if let Err(error) = check_local_destination(&target, sources.len(), opts.has("f")) {
        shell.report(&error);
        return Ok(1);
    }
    for source in sources {
        if !source.exists() {
            shell.report(&ShellError::not_found(&source.display));
            continue;
        }
        let name = ringfs_common::path::file_name(&source.path).to_string();
        let destination = if target.is_dir() { target.child(&name) } else { target.clone() };
        let result = get_one(shell, source, destination, opts.has("f"), opts.has("p")).await;
        report_item(shell, result)?;
    }
    Ok(0)
}

fn check_local_destination(target: &LocalItem, sources: usize, overwrite: bool) -> Result<(), ShellError> {
    if sources > 1 {
        if !target.exists() {
            return Err(ShellError::not_found(&target.display));
        }
        if !target.is_dir() {
            return Err(ShellError::path(&target.display, NOT_DIR));
        }
    } else if target.exists() {
        if !target.is_dir() && !overwrite {
            return Err(ShellError::path(&target.display, EXISTS));
        }
    } else {
        let parent = target.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            let absolute = std::path::absolute(&target.path).unwrap_or_else(|_| target.path.clone());
            return Err(ShellError::Path {
                path: target.display.clone(),
                target: None,
                message: NOT_FOUND.to_string(),
                qualified: Some(format!("file:{}", absolute.display())),
            });
        }
    }
    Ok(())
}

fn get_one<'a>(
    shell: &'a mut Shell,
    source: PathItem,
    destination: LocalItem,
    overwrite: bool,
    preserve: bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ShellError>> + 'a>> {
    Box::pin(async move {
        let stat = source.stat.clone().expect("sources exist");
        if stat.is_dir() {
            if destination.exists() && !destination.is_dir() {
                return Err(ShellError::path(&destination.display, NOT_DIR));
            }
            if !destination.exists() {
                std::fs::create_dir(&destination.path).map_err(|e| local_error(&destination.display, e))?;
            }
            for child in children(shell, &source).await? {
                let name = ringfs_common::path::file_name(&child.path).to_string();
                let result = get_one(shell, child, destination.child(&name), overwrite, preserve).await;
                report_item(shell, result)?;
            }
            return Ok(());
        }
        if destination.exists() && (destination.is_dir() || !overwrite) {
            return Err(ShellError::path(&destination.display, EXISTS));
        }
        let client = shell.client(&source.authority).await?;
        let mut reader = client.open(&source.path).await?;
        let temporary = PathBuf::from(format!("{}{COPYING_SUFFIX}", destination.path.display()));
        let copied = async {
            let mut file = tokio::fs::File::create(&temporary).await?;
            reader.copy_to(&mut file).await?;
            tokio::io::AsyncWriteExt::flush(&mut file).await?;
            Ok::<(), std::io::Error>(())
        }
        .await;
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&temporary);
            return Err(ShellError::Message(format!("`{}': {e}", source.display)));
        }
        std::fs::rename(&temporary, &destination.path).map_err(|e| local_error(&destination.display, e))?;
        if preserve {
            let file = std::fs::File::options().write(true).open(&destination.path)?;
            let to_time = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(ms);
            let times = std::fs::FileTimes::new()
                .set_modified(to_time(stat.modification_time_ms))
                .set_accessed(to_time(stat.access_time_ms));
            file.set_times(times)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                &destination.path,
                std::fs::Permissions::from_mode(u32::from(stat.permission)),
            )?;
        }
        Ok(())
    })
}

/// `-cp [-f] [-p[topax]] [-d] <src> ... <dst>`: directories are copied recursively.
pub async fn cp(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let preserve = take_preserve_option(&mut args)?;
    let format = CommandFormat { min_args: 2, max_args: usize::MAX, flags: &["f", "d"], valued: &["t", "q"] };
    let opts = format.parse(&mut args)?;
    let options =
        CopyOptions { overwrite: opts.has("f"), direct: opts.has("d"), preserve, replication: None };
    let target_arg = args.pop().expect("at least two arguments");
    let target = match destination(shell, &target_arg).await {
        Ok(target) => target,
        Err(error) => {
            shell.report(&error);
            return Ok(1);
        }
    };
    let sources = expand_all(shell, &args).await?;
    if let Err(error) = check_destination(shell, &target, sources.len(), options.overwrite).await {
        shell.report(&error);
        return Ok(1);
    }
    for source in sources {
        if !source.exists() {
            shell.report(&ShellError::not_found(&source.display));
            continue;
        }
        let result = async {
            let destination =
                target_for(shell, &target, ringfs_common::path::file_name(&source.path)).await?;
            check_not_into_itself(&source, &destination)?;
            cp_one(shell, source, destination, &options).await
        }
        .await;
        report_item(shell, result)?;
    }
    Ok(0)
}

fn cp_one<'a>(
    shell: &'a mut Shell,
    source: PathItem,
    destination: PathItem,
    options: &'a CopyOptions,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ShellError>> + 'a>> {
    Box::pin(async move {
        let stat = source.stat.clone().expect("sources exist");
        let destination = if stat.is_dir() {
            let destination = ensure_dfs_directory(shell, destination).await?;
            for child in children(shell, &source).await? {
                let name = ringfs_common::path::file_name(&child.path).to_string();
                let child_target = target_for(shell, &destination, &name).await?;
                let result = cp_one(shell, child, child_target, options).await;
                report_item(shell, result)?;
            }
            destination
        } else {
            if destination.stat.as_ref().is_some_and(|s| s.is_dir() || !options.overwrite) {
                return Err(ShellError::path(&destination.display, EXISTS));
            }
            let source_client = shell.client(&source.authority).await?;
            let mut reader = source_client.open(&source.path).await?;
            copy_reader_into_dfs(shell, &mut reader, &destination, options).await?;
            destination
        };
        if options.preserve.times || options.preserve.ownership || options.preserve.permission {
            let client = shell.client(&destination.authority).await?;
            let namenode = client.namenode();
            if options.preserve.times {
                namenode
                    .set_times(&destination.path, Some(stat.modification_time_ms), Some(stat.access_time_ms))
                    .await?;
            }
            if options.preserve.ownership {
                namenode.set_owner(&destination.path, Some(&stat.owner), Some(&stat.group)).await?;
            }
            if options.preserve.permission {
                namenode.set_permission(&destination.path, stat.permission).await?;
            }
        }
        Ok(())
    })
}

async fn copy_reader_into_dfs(
    shell: &mut Shell,
    reader: &mut FileReader,
    destination: &PathItem,
    options: &CopyOptions,
) -> Result<(), ShellError> {
    let client = shell.client(&destination.authority).await?;
    let temporary = if options.direct {
        destination.path.clone()
    } else {
        format!("{}{COPYING_SUFFIX}", destination.path)
    };
    let write = WriteOptions { overwrite: true, replication: options.replication, ..WriteOptions::default() };
    let mut writer: FileWriter = client.create_with(&temporary, &write).await?;
    let copied = async {
        let mut buffer = vec![0u8; COPY_BUFFER_SIZE];
        loop {
            let count = reader.read(&mut buffer).await?;
            if count == 0 {
                break;
            }
            writer.write_all(&buffer[..count]).await?;
        }
        writer.close().await?;
        Ok::<(), ShellError>(())
    }
    .await;
    finish_copy(&client, copied, &temporary, destination, options.direct).await
}

/// Writes `reader`'s bytes from its position to stdout.
async fn dump(shell: &mut Shell, reader: &mut FileReader) -> Result<(), ShellError> {
    let mut buffer = vec![0u8; COPY_BUFFER_SIZE.min(reader.len().max(1) as usize)];
    loop {
        let count = reader.read(&mut buffer).await?;
        if count == 0 {
            return Ok(());
        }
        shell.out().write_all(&buffer[..count])?;
    }
}

/// `-cat [-ignoreCrc] <src> ...`, and `-text`, which refuses compressed formats it
/// cannot decode rather than printing them raw.
pub async fn cat(shell: &mut Shell, mut args: Vec<String>, text: bool) -> Result<i32, ShellError> {
    let opts = CommandFormat { min_args: 1, max_args: usize::MAX, flags: &["ignoreCrc"], valued: &[] }
        .parse(&mut args)?;
    if opts.has("ignoreCrc") {
        shell.set_verify_checksum(false);
    }
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        let result = async {
            if item.is_dir() {
                return Err(ShellError::path(&item.display, IS_DIR));
            }
            let client = shell.client(&item.authority).await?;
            let mut reader = client.open(&item.path).await?;
            if text {
                check_plain_text(&mut reader, &item).await?;
            }
            dump(shell, &mut reader).await
        }
        .await;
        report_item(shell, result)?;
    }
    Ok(0)
}

/// `-text` decodes gzip, SequenceFiles and Avro in Hadoop; ringfs prints plain files
/// and names the formats it does not decode.
async fn check_plain_text(reader: &mut FileReader, item: &PathItem) -> Result<(), ShellError> {
    let mut magic = [0u8; 4];
    let count = reader.read_at(0, &mut magic).await?;
    let format = match &magic[..count] {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [b'S', b'E', b'Q', ..] => Some("SequenceFile"),
        [b'O', b'b', b'j', 1] => Some("Avro"),
        _ => None,
    };
    match format {
        Some(format) => Err(ShellError::path(
            &item.display,
            &format!("{format} data is not decoded by ringfs dfs -text; use -cat and a local decoder"),
        )),
        None => Ok(()),
    }
}

/// `-head <file>`: the first kilobyte.
pub async fn head(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    CommandFormat { min_args: 1, max_args: 1, flags: &[], valued: &[] }.parse(&mut args)?;
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        let result = async {
            if item.is_dir() {
                return Err(ShellError::path(&item.display, IS_DIR));
            }
            let client = shell.client(&item.authority).await?;
            let mut reader = client.open(&item.path).await?;
            let mut buffer = vec![0u8; reader.len().min(HEAD_TAIL_BYTES) as usize];
            reader.read_exact_at(0, &mut buffer).await?;
            shell.out().write_all(&buffer)?;
            Ok(())
        }
        .await;
        report_item(shell, result)?;
    }
    Ok(0)
}

/// `-tail [-f] [-s <sleep ms>] <file>`: the last kilobyte, then (with -f) whatever is
/// appended, polled every 5 s.
pub async fn tail(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let opts = CommandFormat { min_args: 1, max_args: 1, flags: &["f"], valued: &["s"] }.parse(&mut args)?;
    let delay = match opts.value("s").filter(|s| !s.is_empty()) {
        Some(text) => Duration::from_millis(
            text.parse().map_err(|_| ShellError::Usage(format!("For input string: \"{text}\"")))?,
        ),
        None => TAIL_FOLLOW_DELAY,
    };
    for item in expand_all(shell, &args).await? {
        if reported_missing(shell, &item) {
            continue;
        }
        let result = async {
            if item.is_dir() {
                return Err(ShellError::path(&item.display, IS_DIR));
            }
            let client = shell.client(&item.authority).await?;
            let mut offset = dump_from(shell, &client, &item, None).await?;
            while opts.has("f") {
                let _ = shell.out().flush();
                tokio::time::sleep(delay).await;
                offset = dump_from(shell, &client, &item, Some(offset)).await?;
            }
            Ok(())
        }
        .await;
        report_item(shell, result)?;
    }
    Ok(0)
}

/// Prints from `offset` (the last kilobyte when `None`) to the end; returns the end.
async fn dump_from(
    shell: &mut Shell,
    client: &DfsClient,
    item: &PathItem,
    offset: Option<u64>,
) -> Result<u64, ShellError> {
    let mut reader = client.open(&item.path).await?;
    let length = reader.len();
    let start = match offset {
        Some(offset) if offset > length => return Ok(length),
        Some(offset) => offset,
        None => length.saturating_sub(HEAD_TAIL_BYTES),
    };
    reader.seek(start);
    dump(shell, &mut reader).await?;
    Ok(reader.position())
}

/// `-getmerge [-nl] [-skip-empty-file] <src> ... <localdst>`: the files of each source
/// (directories: their files, one level) concatenated into one local file.
pub async fn getmerge(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let opts =
        CommandFormat { min_args: 2, max_args: usize::MAX, flags: &["nl", "skip-empty-file"], valued: &[] }
            .parse(&mut args)?;
    let target_arg = args.pop().expect("at least two arguments");
    let target = LocalItem::new(target_arg.clone(), PathBuf::from(local_path(&target_arg)));
    if target.is_dir() {
        return Err(ShellError::path(&target.display, IS_DIR));
    }
    let mut files = Vec::new();
    let mut missing = false;
    for item in expand_all(shell, &args).await? {
        if !item.exists() {
            shell.report(&ShellError::not_found(&item.display));
            missing = true;
            continue;
        }
        if item.is_dir() {
            files.extend(children(shell, &item).await?.into_iter().filter(|c| !c.is_dir()));
        } else {
            files.push(item);
        }
    }
    if missing || shell.has_errors() {
        return Ok(1);
    }
    let mut out = std::fs::File::create(&target.path).map_err(|e| local_error(&target.display, e))?;
    for file in files {
        let length = file.stat.as_ref().map_or(0, |s| s.length);
        if length != 0 {
            let client = shell.client(&file.authority).await?;
            let mut reader = client.open(&file.path).await?;
            let mut buffer = vec![0u8; COPY_BUFFER_SIZE.min(length as usize)];
            loop {
                let count = reader.read(&mut buffer).await?;
                if count == 0 {
                    break;
                }
                out.write_all(&buffer[..count])?;
            }
        }
        if opts.has("nl") && (length != 0 || !opts.has("skip-empty-file")) {
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(0)
}

/// `-appendToFile [-n] <localsrc> ... <dst>` (`-` reads stdin).
pub async fn append_to_file(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let opts =
        CommandFormat { min_args: 2, max_args: usize::MAX, flags: &["n"], valued: &[] }.parse(&mut args)?;
    let target_arg = args.pop().expect("at least two arguments");
    let mut sources = Vec::new();
    for arg in &args {
        if arg == "-" {
            sources.push(None);
            continue;
        }
        match expand_local(arg) {
            Ok(items) => {
                for item in items {
                    if !item.exists() {
                        // Java's FileNotFoundException names the absolute local path.
                        let absolute = std::path::absolute(&item.path).unwrap_or_else(|_| item.path.clone());
                        return Err(ShellError::Message(absolute.display().to_string()));
                    }
                    sources.push(Some(item));
                }
            }
            Err(error) => return Err(error),
        }
    }
    let target = destination(shell, &target_arg).await?;
    if target.is_dir() {
        return Err(ShellError::path(&target.display, IS_DIR));
    }
    let client = shell.client(&target.authority).await?;
    if !target.exists() {
        client.create(&target.path, false, None, None).await?.close().await?;
    }
    let mut writer = client.append_with(&target.path, opts.has("n")).await?;
    let mut buffer = vec![0u8; COPY_BUFFER_SIZE];
    for source in sources {
        let mut input: Box<dyn tokio::io::AsyncRead + Unpin> = match &source {
            None => Box::new(tokio::io::stdin()),
            Some(item) => {
                Box::new(tokio::fs::File::open(&item.path).await.map_err(|e| local_error(&item.display, e))?)
            }
        };
        loop {
            let count = input.read(&mut buffer).await?;
            if count == 0 {
                break;
            }
            writer.write_all(&buffer[..count]).await?;
        }
    }
    writer.close().await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preserve_options() {
        let mut args: Vec<String> = ["-f", "-ptp", "a", "b"].iter().map(|s| s.to_string()).collect();
        let preserve = take_preserve_option(&mut args).unwrap();
        assert!(preserve.times && preserve.permission && !preserve.ownership);
        assert_eq!(args, ["-f", "a", "b"]);
        let mut args: Vec<String> = ["-p", "a", "b"].iter().map(|s| s.to_string()).collect();
        let preserve = take_preserve_option(&mut args).unwrap();
        assert!(preserve.times && preserve.permission && preserve.ownership);
        let mut args: Vec<String> = ["a", "-p"].iter().map(|s| s.to_string()).collect();
        let preserve = take_preserve_option(&mut args).unwrap();
        assert!(!preserve.times);
        assert_eq!(args.len(), 2);
    }

    #[test]
    fn local_globs() {
        let dir = std::env::temp_dir().join(format!("ringfs-shell-glob-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a.txt", "b.txt", "c.bin"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let pattern = format!("{}/*.txt", dir.display());
        let found: Vec<String> = expand_local(&pattern).unwrap().into_iter().map(|i| i.display).collect();
        assert_eq!(found, vec![format!("{}/a.txt", dir.display()), format!("{}/b.txt", dir.display())]);
        assert!(expand_local(&format!("{}/*.none", dir.display())).is_err());
        let missing = expand_local(&format!("{}/plain", dir.display())).unwrap();
        assert!(!missing[0].exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
