//! HDFS path rules shared by the namenode and the shell: absolute, `/`-separated,
//! no `.`/`..` components, no empty components except the root.

/// Why a path is not a valid HDFS path (InvalidPathException on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid path name {reason}: {path}")]
pub struct InvalidPath {
    pub path: String,
    pub reason: &'static str,
}

/// Splits an absolute path into its components, rejecting what HDFS rejects. A trailing
/// slash and repeated slashes are tolerated, as DFSUtil does.
pub fn components(path: &str) -> Result<Vec<&str>, InvalidPath> {
    let invalid = |reason| InvalidPath { path: path.to_string(), reason };
    if !path.starts_with('/') {
        return Err(invalid("Relative path"));
    }
    let mut parts = Vec::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(invalid("Invalid file name"));
        }
        if part.contains(':') {
            return Err(invalid("Invalid file name"));
        }
        parts.push(part);
    }
    Ok(parts)
}

/// Joins components back into a normalised absolute path.
pub fn join(parts: &[&str]) -> String {
    if parts.is_empty() {
        return "/".to_string();
    }
    let mut out = String::new();
    for part in parts {
        out.push('/');
        out.push_str(part);
    }
    out
}

/// The parent of a normalised path (`/` for top-level entries and for `/` itself).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component of a normalised path (empty for `/`).
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_rejects() {
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(components("/a//b/").unwrap(), vec!["a", "b"]);
        assert!(components("a/b").is_err());
        assert!(components("/a/../b").is_err());
        assert!(components("/a/./b").is_err());
        assert_eq!(join(&["a", "b"]), "/a/b");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(file_name("/a/b"), "b");
    }
}
