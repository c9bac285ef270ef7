//! Hadoop-style configuration: `core-site.xml`/`hdfs-site.xml` parsed from text, `-D`
//! overrides, HDFS's key names and defaults. Reading the files is the caller's job.

use std::collections::BTreeMap;

/// Keys ringfs understands, with HDFS's defaults. Anything else is reported as unknown.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("fs.defaultFS", "hdfs://127.0.0.1:8020"),
    ("fs.trash.interval", "0"),
    ("dfs.namenode.rpc-address", ""),
    ("dfs.namenode.name.dir", "/tmp/hadoop-ringfs/dfs/name"),
    ("dfs.namenode.http-address", "0.0.0.0:9870"),
    ("dfs.datanode.data.dir", "/tmp/hadoop-ringfs/dfs/data"),
    ("dfs.datanode.address", "0.0.0.0:9866"),
    ("dfs.datanode.ipc.address", "0.0.0.0:9867"),
    ("dfs.datanode.http.address", "0.0.0.0:9864"),
    ("dfs.datanode.hostname", ""),
    ("dfs.datanode.io.engine", "auto"),
    ("dfs.datanode.synconclose", "false"),
    ("dfs.datanode.uring.rings", "0"),
    ("dfs.datanode.max.transfer.threads", "4096"),
    // Hadoop's default is 256; ringfs takes the kernel's usual somaxconn, since a burst
    // of a thousand connects overflowing the queue costs each dropped SYN a 1 s retry.
    ("ipc.server.listen.queue.size", "4096"),
    ("dfs.datanode.readahead.bytes", "4194304"),
    ("dfs.replication", "3"),
    ("dfs.replication.max", "512"),
    ("dfs.blocksize", "134217728"),
    ("dfs.bytes-per-checksum", "512"),
    ("dfs.checksum.type", "CRC32C"),
    ("dfs.client-write-packet-size", "65536"),
    ("io.file.buffer.size", "4096"),
    ("dfs.namenode.replication.min", "1"),
    ("dfs.heartbeat.interval", "3"),
    ("dfs.namenode.heartbeat.recheck-interval", "300000"),
    ("dfs.blockreport.intervalMsec", "21600000"),
    ("dfs.permissions.enabled", "true"),
    ("dfs.permissions.superusergroup", "supergroup"),
    ("dfs.namenode.safemode.threshold-pct", "0.999"),
    ("dfs.namenode.safemode.extension", "30000"),
    ("dfs.namenode.safemode.min.datanodes", "0"),
    ("dfs.namenode.checkpoint.txns", "1000000"),
    ("dfs.namenode.checkpoint.period", "3600"),
    ("dfs.namenode.handler.count", "10"),
    ("dfs.ls.limit", "1000"),
    ("dfs.namenode.fs-limits.max-component-length", "255"),
    ("dfs.namenode.lease.soft-limit", "60000"),
    ("dfs.namenode.lease.hard-limit", "1200"),
    ("dfs.namenode.redundancy.interval.seconds", "3"),
    ("dfs.namenode.reconstruction.pending.timeout-sec", "300"),
    ("dfs.namenode.fs-limits.min-block-size", "1048576"),
    ("dfs.namenode.fs-limits.max-blocks-per-file", "10000"),
    ("dfs.namenode.fs-limits.max-directory-items", "1048576"),
    ("dfs.namenode.accesstime.precision", "3600000"),
    ("dfs.block.invalidate.limit", "1000"),
    ("dfs.namenode.replication.max-streams", "2"),
    ("net.topology.script.file.name", ""),
    ("net.topology.table.file.name", ""),
    ("hadoop.security.authentication", "simple"),
    ("ipc.maximum.data.length", "134217728"),
];

/// Errors reading configuration text or values.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("{source_name}: malformed XML: {reason}")]
    Xml { source_name: String, reason: String },
    #[error("{key}={value:?} is not a valid {expected}")]
    BadValue { key: String, value: String, expected: &'static str },
    #[error("-D expects key=value, got {arg:?}")]
    BadOverride { arg: String },
}

/// A layered key/value configuration: defaults, then files in order, then overrides.
#[derive(Debug, Clone, Default)]
pub struct Configuration {
    values: BTreeMap<String, String>,
}

impl Configuration {
    /// HDFS's defaults only.
    pub fn new() -> Configuration {
        let values = DEFAULTS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Configuration { values }
    }

    /// Merges the `<property><name>..</name><value>..</value></property>` entries of a
    /// Hadoop XML file; returns the keys that are not known to ringfs (to be logged).
    pub fn merge_xml(&mut self, source_name: &str, xml: &str) -> Result<Vec<String>, ConfError> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(xml);
        reader.config_mut().trim_text(true);
        let xml_err = |reason: String| ConfError::Xml { source_name: source_name.to_string(), reason };
        let mut unknown = Vec::new();
        let (mut name, mut value) = (None::<String>, None::<String>);
        let mut field = None::<String>;
        loop {
            match reader.read_event().map_err(|e| xml_err(e.to_string()))? {
                Event::Start(tag) => {
                    let tag = String::from_utf8_lossy(tag.name().as_ref()).to_string();
                    if tag == "property" {
                        name = None;
                        value = None;
                    }
                    field = Some(tag);
                }
                Event::Text(text) => {
                    let text = text.unescape().map_err(|e| xml_err(e.to_string()))?.to_string();
                    match field.as_deref() {
                        Some("name") => name = Some(text),
                        Some("value") => value = Some(text),
                        _ => {}
                    }
                }
                Event::End(tag) => {
                    if tag.name().as_ref() == b"property" {
                        if let Some(key) = name.take() {
                            if !self.is_known(&key) {
                                unknown.push(key.clone());
                            }
                            self.values.insert(key, value.take().unwrap_or_default());
                        }
                    }
                    field = None;
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(unknown)
    }

    /// Applies a `-D key=value` override; returns whether the key is known.
    pub fn set_override(&mut self, arg: &str) -> Result<bool, ConfError> {
        let (key, value) =
            arg.split_once('=').ok_or_else(|| ConfError::BadOverride { arg: arg.to_string() })?;
        let known = self.is_known(key);
        self.values.insert(key.trim().to_string(), value.trim().to_string());
        Ok(known)
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_string(), value.into());
    }

    pub fn is_known(&self, key: &str) -> bool {
        DEFAULTS.iter().any(|(k, _)| *k == key) || key.starts_with("hadoop.") || key.starts_with("ipc.")
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn get_str(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, expected: &'static str) -> Result<Option<T>, ConfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| ConfError::BadValue {
                key: key.to_string(),
                value: v.to_string(),
                expected,
            }),
        }
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, ConfError> {
        let value = self.get(key).unwrap_or("0");
        parse_size(value).ok_or_else(|| ConfError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected: "non-negative integer (k/m/g/t suffixes allowed)",
        })
    }

    pub fn get_f64(&self, key: &str) -> Result<f64, ConfError> {
        Ok(self.parse(key, "number")?.unwrap_or(0.0))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, ConfError> {
        Ok(self.parse(key, "boolean")?.unwrap_or(false))
    }

    /// Comma-separated list, trimmed, empties dropped.
    pub fn get_list(&self, key: &str) -> Vec<String> {
        self.get_str(key).split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
    }

    /// The namenode's RPC `host:port`: `dfs.namenode.rpc-address`, else the authority of
    /// `fs.defaultFS` (port 8020 when absent).
    pub fn namenode_address(&self) -> String {
        if let Some(addr) = self.get("dfs.namenode.rpc-address") {
            return addr.to_string();
        }
        let uri = self.get_str("fs.defaultFS");
        let authority = uri.strip_prefix("hdfs://").unwrap_or(uri);
        let authority = authority.split('/').next().unwrap_or("");
        if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:8020")
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Parses HDFS sizes: plain integers or with a k/m/g/t/p suffix (binary multiples), as
/// `dfs.blocksize=128m` allows.
pub fn parse_size(value: &str) -> Option<u64> {
    let value = value.trim();
    let (digits, multiplier) = match value.chars().last()?.to_ascii_lowercase() {
        'k' => (&value[..value.len() - 1], 1u64 << 10),
        'm' => (&value[..value.len() - 1], 1 << 20),
        'g' => (&value[..value.len() - 1], 1 << 30),
        't' => (&value[..value.len() - 1], 1 << 40),
        'p' => (&value[..value.len() - 1], 1 << 50),
        _ => (value, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_and_overrides_layer_over_defaults() {
        let mut conf = Configuration::new();
        let xml = r#"<?xml version="1.0"?><configuration>
            <property><name>dfs.replication</name><value>1</value></property>
            <property><name>my.custom.key</name><value>x &amp; y</value></property>
        </configuration>"#;
        let unknown = conf.merge_xml("hdfs-site.xml", xml).unwrap();
        assert_eq!(unknown, vec!["my.custom.key".to_string()]);
        assert_eq!(conf.get_u64("dfs.replication").unwrap(), 1);
        assert_eq!(conf.get("my.custom.key"), Some("x & y"));
        assert!(conf.set_override("dfs.blocksize=1m").unwrap());
        assert_eq!(conf.get_u64("dfs.blocksize").unwrap(), 1 << 20);
        assert!(conf.set_override("novalue").is_err());
    }

    #[test]
    fn namenode_address_from_default_fs() {
        let mut conf = Configuration::new();
        conf.set("fs.defaultFS", "hdfs://nn.example:9000/");
        assert_eq!(conf.namenode_address(), "nn.example:9000");
        conf.set("fs.defaultFS", "hdfs://nn.example");
        assert_eq!(conf.namenode_address(), "nn.example:8020");
        conf.set("dfs.namenode.rpc-address", "10.0.0.1:8021");
        assert_eq!(conf.namenode_address(), "10.0.0.1:8021");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128m"), Some(128 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }
}
