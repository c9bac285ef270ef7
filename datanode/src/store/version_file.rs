//! HDFS `VERSION` files: Java properties (`key=value` lines, `#` comments), written
//! atomically (temporary file, fsync, rename) so a crash leaves the old or the new one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Largest VERSION file read: a handful of short properties.
const VERSION_FILE_SIZE_MAX: u64 = 64 * 1024;

/// Storage-level layout version a Hadoop 3 DataNode writes (BLOCKID_BASED_LAYOUT_32_by_32).
pub const DATANODE_LAYOUT_VERSION: i32 = -57;

/// Parsed properties, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub values: BTreeMap<String, String>,
}

impl Properties {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn set(&mut self, key: &str, value: impl ToString) {
        self.values.insert(key.to_string(), value.to_string());
    }

    pub fn parse(text: &str) -> Properties {
        let values = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Properties { values }
    }

    pub fn render(&self) -> String {
        let mut out = String::from("#Written by ringfs\n");
        for (k, v) in &self.values {
            out.push_str(k);
            out.push('=');
            out.push_str(v);
            out.push('\n');
        }
        out
    }

    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> std::io::Result<Option<Properties>> {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if meta.len() > VERSION_FILE_SIZE_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is {} bytes, larger than {VERSION_FILE_SIZE_MAX}", path.display(), meta.len()),
            ));
        }
        let text = std::fs::read_to_string(path)?;
        Ok(Some(Properties::parse(&text)))
    }

    /// Replaces `path` atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(self.render().as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_java_properties() {
        let text = "#Fri Jan 01 00:00:00 UTC 2021\nstorageID=DS-1\nclusterID = CID-x\n\nlayoutVersion=-57\n";
        let props = Properties::parse(text);
        assert_eq!(props.get("storageID"), Some("DS-1"));
        assert_eq!(props.get("clusterID"), Some("CID-x"));
        assert_eq!(props.get("layoutVersion"), Some("-57"));
        assert_eq!(props.get("missing"), None);
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("VERSION");
        assert_eq!(Properties::read(&path).unwrap(), None);
        let mut props = Properties::default();
        props.set("datanodeUuid", "abc");
        props.set("cTime", 0);
        props.write(&path).unwrap();
        assert_eq!(Properties::read(&path).unwrap(), Some(props));
        assert!(!path.with_extension("tmp").exists());
    }
}
