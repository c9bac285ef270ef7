//! Runs `ringfs-bench tiny` end to end and checks what it writes: results.json well-formed
//! with every section present (measured, or listed in `skipped` with a reason), report.md
//! and the table. No timing is asserted.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Sections that are measured against a cluster; each must be filled or skipped.
const CLUSTER_SECTIONS: [&str; 5] = ["data_path", "connections", "metadata", "memory", "restarts"];

fn is_filled(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => fields.values().any(|v| !v.is_null()),
        _ => true,
    }
}

#[test]
fn tiny_run_writes_every_section() {
    let out = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_ringfs-bench"))
        .args(["tiny", "--no-progress", "--skip", "interop", "--out"])
        .arg(out.path())
        .arg("--scratch")
        .arg(scratch.path())
        .status()
        .expect("run ringfs-bench");
    assert!(status.success(), "ringfs-bench tiny failed: {status}");

    let text = std::fs::read_to_string(out.path().join("results.json")).expect("results.json written");
    let results: Value = serde_json::from_str(&text).expect("results.json is JSON");
    for key in [
        "meta",
        "ceilings",
        "data_path",
        "engine_comparison",
        "connections",
        "metadata",
        "memory",
        "restarts",
        "interop",
        "targets",
        "skipped",
    ] {
        assert!(results.get(key).is_some(), "results.json lacks section {key}");
    }
    assert_eq!(results["meta"]["mode"], "tiny");

    let ceilings = results["ceilings"].as_object().expect("ceilings measured");
    for name in ["tcp_copy", "tcp_sendfile", "disk_write_direct", "disk_read_direct", "crc32c_per_core"] {
        let rate = ceilings[name]["bytes_per_sec"].as_f64().unwrap_or(0.0);
        assert!(rate > 0.0, "ceiling {name} has no rate: {}", ceilings[name]);
    }

    let skipped: Vec<String> = results["skipped"]
        .as_array()
        .expect("skipped is a list")
        .iter()
        .map(|s| {
            let reason = s["reason"].as_str().unwrap_or("");
            assert!(!reason.is_empty(), "a skipped section without a reason: {s}");
            s["section"].as_str().expect("skipped section name").to_string()
        })
        .collect();
    for section in CLUSTER_SECTIONS {
        assert!(
            is_filled(&results[section]) || skipped.iter().any(|s| s.starts_with(section)),
            "{section} is neither measured nor listed as skipped"
        );
    }
    assert!(skipped.iter().any(|s| s == "interop"), "--skip interop is recorded as skipped");

    for scenario in results["data_path"].as_array().unwrap() {
        for field in
            ["name", "engine", "bytes_per_sec", "latency", "datanode_cpu_seconds", "ratio_to_ceiling"]
        {
            assert!(scenario.get(field).is_some(), "data_path entry lacks {field}: {scenario}");
        }
        let latency = &scenario["latency"];
        for field in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"] {
            assert!(latency[field].is_number(), "latency lacks {field}");
        }
    }
    for target in results["targets"].as_array().unwrap() {
        assert!(
            target["verdict"].as_str().is_some_and(|v| !v.is_empty()),
            "target without verdict: {target}"
        );
    }

    let report = std::fs::read_to_string(out.path().join("report.md")).expect("report.md written");
    assert!(report.starts_with("# ringfs-bench report"));
    assert!(report.contains("Machine ceilings"));
    assert!(Path::new(&out.path().join("table.txt")).is_file());
    if is_filled(&results["data_path"]) {
        assert!(out.path().join("throughput.svg").is_file(), "throughput plot drawn");
    }
}
