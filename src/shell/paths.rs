//! Path arguments as FsShell's PathData treats them: every argument is globbed, and
//! each match is displayed in the argument's own style — relative to the working
//! directory, absolute, or as an `hdfs://` URI — so output paths look like the input.

use ringfs_client::{resolve_path, FileStatus};

use super::glob::{expand_slash_braces, has_wildcard, unescape, GlobPattern};
use super::{Shell, ShellError};

/// How an argument was written, which decides how its matches are printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    /// `a/b`: printed relative to `/user/<user>`.
    Relative,
    /// `/a/b`: printed as the absolute path.
    Absolute,
    /// `hdfs://host:port/a/b`: printed as a URI with this prefix.
    Uri { prefix: String },
}

/// One path a command works on.
#[derive(Debug, Clone)]
pub struct PathItem {
    /// How FsShell would print it.
    pub display: String,
    /// Absolute, normalised path on the namenode.
    pub path: String,
    /// `host:port` of the namenode holding it.
    pub authority: String,
    pub kind: PathKind,
    /// `None` when the path does not exist.
    pub stat: Option<FileStatus>,
}

impl PathItem {
    pub fn exists(&self) -> bool {
        self.stat.is_some()
    }

    pub fn is_dir(&self) -> bool {
        self.stat.as_ref().is_some_and(|s| s.is_dir())
    }

    /// The entry `stat` of this directory, displayed as FsShell's getPathDataForChild.
    pub fn child(&self, stat: FileStatus) -> PathItem {
        let name = stat.name().to_string();
        let display = if self.display == "." {
            name
        } else if self.display.ends_with('/') {
            format!("{}{name}", self.display)
        } else {
            format!("{}/{name}", self.display)
        };
        PathItem {
            display,
            path: stat.path.clone(),
            authority: self.authority.clone(),
            kind: self.kind.clone(),
            stat: Some(stat),
        }
    }

    /// An item for `path` (absolute) displayed in this item's style.
    pub fn sibling(&self, path: &str, cwd: &str, stat: Option<FileStatus>) -> PathItem {
        let is_dir = stat.as_ref().is_some_and(|s| s.is_dir());
        PathItem {
            display: display_for(&self.kind, cwd, path, is_dir),
            path: path.to_string(),
            authority: self.authority.clone(),
            kind: self.kind.clone(),
            stat,
        }
    }

    /// `hdfs://host:port/abs/path`, as Java prints a qualified Path.
    pub fn qualified(&self) -> String {
        format!("{}{}", Shell::fs_uri(&self.authority), self.path)
    }

    /// The parent directory, qualified, as Java's `Path.getParent()` of a qualified path.
    pub fn qualified_parent(&self) -> String {
        format!("{}{}", Shell::fs_uri(&self.authority), ringfs_common::path::parent(&self.path))
    }
}

/// How a match at `path` is printed for an argument written as `kind`.
pub fn display_for(kind: &PathKind, cwd: &str, path: &str, is_dir: bool) -> String {
    match kind {
        PathKind::Relative => relativize(cwd, path, is_dir),
        PathKind::Absolute => path.to_string(),
        PathKind::Uri { prefix } => format!("{prefix}{path}"),
    }
}

/// FsShell's PathData.relativize: `path` relative to `cwd`, with `..` where needed.
pub fn relativize(cwd: &str, path: &str, is_dir: bool) -> String {
    if cwd == path {
        return ".".to_string();
    }
    let cwd_slash = if cwd.ends_with('/') { cwd.to_string() } else { format!("{cwd}/") };
    let path_slash = if is_dir && !path.ends_with('/') { format!("{path}/") } else { path.to_string() };
    let mut last_sep: Option<usize> = None;
    for (i, (a, b)) in cwd_slash.bytes().zip(path_slash.bytes()).enumerate() {
        if a != b {
            break;
        }
        if a == b'/' {
            last_sep = Some(i);
        }
    }
    let after = last_sep.map_or(0, |s| s + 1);
    let mut relative = if after < path.len() { path[after..].to_string() } else { String::new() };
    let mut sep = last_sep;
    if last_sep.is_some_and(|s| s < cwd.len()) {
        while let Some(at) = sep {
            relative = if relative.is_empty() { "..".to_string() } else { format!("../{relative}") };
            sep = cwd[at + 1..].find('/').map(|i| at + 1 + i);
        }
    }
    relative
}

/// Splits an argument into (kind, authority, path part) without resolving it.
pub fn classify(shell: &Shell, arg: &str) -> Result<(PathKind, String, String), ShellError> {
    if let Some(rest) = arg.strip_prefix("hdfs://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let authority = if authority.is_empty() {
            shell.default_authority().to_string()
        } else if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:{}", ringfs_client::dfs::NAMENODE_PORT_DEFAULT)
        };
        let prefix = format!("hdfs://{}", rest.split('/').next().unwrap_or(""));
        return Ok((PathKind::Uri { prefix }, authority, path.to_string()));
    }
    if let Some(path) = arg.strip_prefix("hdfs:") {
        let prefix = "hdfs:".to_string();
        return Ok((PathKind::Uri { prefix }, shell.default_authority().to_string(), path.to_string()));
    }
    if let Some(colon) = arg.find(':') {
        if arg[..colon].chars().all(|c| c.is_ascii_alphanumeric()) && arg[colon + 1..].starts_with('/') {
            return Err(ShellError::Message(format!(
                "No FileSystem for scheme \"{}\" (ringfs dfs speaks hdfs:// only)",
                &arg[..colon]
            )));
        }
    }
    let kind = if arg.starts_with('/') { PathKind::Absolute } else { PathKind::Relative };
    Ok((kind, shell.default_authority().to_string(), arg.to_string()))
}

/// Expands one argument: its glob matches, or one item without a stat when a plain
/// path does not exist. A glob that matches nothing is an error.
pub async fn expand(shell: &mut Shell, arg: &str) -> Result<Vec<PathItem>, ShellError> {
    if arg.is_empty() {
        return Err(ShellError::Usage("Can not create a Path from an empty string".to_string()));
    }
    let (kind, authority, raw_path) = classify(shell, arg)?;
    let cwd = shell.cwd().to_string();
    let client = shell.client(&authority).await?;
    let mut matches: Vec<FileStatus> = Vec::new();
    let mut any_wildcard = false;
    for pattern in expand_slash_braces(&raw_path) {
        let absolute = resolve_path(&cwd, &pattern).map_err(ShellError::from)?;
        if !has_wildcard(&absolute) {
            if let Some(stat) = client.namenode().get_file_info(&unescape(&absolute)).await? {
                matches.push(stat);
            }
            continue;
        }
        any_wildcard = true;
        matches.extend(glob_status(shell, &authority, &absolute).await?);
    }
    if matches.is_empty() {
        if any_wildcard {
            return Err(ShellError::not_found(arg));
        }
        let absolute = resolve_path(&cwd, &unescape(&raw_path)).map_err(ShellError::from)?;
        return Ok(vec![PathItem { display: unescape(arg), path: absolute, authority, kind, stat: None }]);
    }
    matches.sort_by(|a, b| a.path.cmp(&b.path));
    matches.dedup_by(|a, b| a.path == b.path);
    Ok(matches
        .into_iter()
        .map(|stat| PathItem {
            display: display_for(&kind, &cwd, &stat.path, stat.is_dir()),
            path: stat.path.clone(),
            authority: authority.clone(),
            kind: kind.clone(),
            stat: Some(stat),
        })
        .collect())
}

/// Hadoop's Globber: walks the pattern a component at a time, listing directories only
/// for components with wildcards.
async fn glob_status(
    shell: &mut Shell,
    authority: &str,
    pattern: &str,
) -> Result<Vec<FileStatus>, ShellError> {
    let client = shell.client(authority).await?;
    // (path, stat if already known)
    let mut candidates: Vec<(String, Option<FileStatus>)> = vec![("/".to_string(), None)];
    for component in pattern.split('/').filter(|c| !c.is_empty()) {
        if !has_wildcard(component) {
            let name = unescape(component);
            candidates = candidates
                .into_iter()
                .map(|(parent, _)| (ringfs_client::resolve_path(&parent, &name).unwrap_or_default(), None))
                .collect();
            continue;
        }
        let glob = GlobPattern::compile(component).map_err(ShellError::Message)?;
        let mut next = Vec::new();
        for (parent, stat) in candidates {
            if stat.as_ref().is_some_and(|s| !s.is_dir()) {
                continue;
            }
            let Some(entries) = client.namenode().get_listing(&parent).await? else { continue };
            for entry in entries {
                if entry.path != parent && glob.matches(entry.name()) {
                    next.push((entry.path.clone(), Some(entry)));
                }
            }
        }
        candidates = next;
        if candidates.is_empty() {
            break;
        }
    }
    let mut found = Vec::with_capacity(candidates.len());
    for (path, stat) in candidates {
        match stat {
            Some(stat) => found.push(stat),
            None => {
                if let Some(stat) = client.namenode().get_file_info(&path).await? {
                    found.push(stat);
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relativize_like_pathdata() {
        let cwd = "/user/root";
        assert_eq!(relativize(cwd, "/user/root", true), ".");
        assert_eq!(relativize(cwd, "/user/root/d1", true), "d1");
        assert_eq!(relativize(cwd, "/user/root/d1/a.txt", false), "d1/a.txt");
        assert_eq!(relativize(cwd, "/user/bob", true), "../bob");
        assert_eq!(relativize(cwd, "/tmp/x", false), "../../tmp/x");
        assert_eq!(relativize(cwd, "/user", true), "..");
        assert_eq!(relativize(cwd, "/", true), "../..");
        assert_eq!(relativize(cwd, "/user/rootx", false), "../rootx");
    }

    #[test]
    fn children_keep_the_argument_style() {
        let stat = |path: &str| FileStatus {
            path: path.to_string(),
            kind: ringfs_client::FileKind::File,
            length: 0,
            permission: 0o644,
            owner: String::new(),
            group: String::new(),
            modification_time_ms: 0,
            access_time_ms: 0,
            replication: 1,
            block_size: 1,
            file_id: 0,
            children_count: 0,
            symlink_target: None,
            has_acl: false,
            is_encrypted: false,
            is_erasure_coded: false,
        };
        let parent = |display: &str, path: &str| PathItem {
            display: display.to_string(),
            path: path.to_string(),
            authority: "nn:1".to_string(),
            kind: PathKind::Relative,
            stat: None,
        };
        assert_eq!(parent(".", "/user/root").child(stat("/user/root/a")).display, "a");
        assert_eq!(parent("d1", "/user/root/d1").child(stat("/user/root/d1/a")).display, "d1/a");
        assert_eq!(parent("/", "/").child(stat("/a")).display, "/a");
        assert_eq!(parent("hdfs://nn:1/", "/").child(stat("/a")).display, "hdfs://nn:1/a");
    }
}
