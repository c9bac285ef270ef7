#!/usr/bin/env bash
# Builds ringfs and ringfs-bench in release mode and runs the benchmark harness.
#
# Usage: scripts/bench.sh [quick|full|tiny|ceilings] [ringfs-bench options...]
#   scripts/bench.sh                      # quick: under two minutes, every section
#   scripts/bench.sh full --out results/  # the issue's sizes
#   scripts/bench.sh quick --namenode hdfs://127.0.0.1:8020
#
# Results land in ./bench-results/<UTC timestamp>/ unless --out is given: a table on the
# terminal, results.json, report.md and SVG plots. Criterion micro-benchmarks are
# separate: cargo bench -p ringfs-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-quick}
[[ $# -gt 0 ]] && shift
cargo build --release -p ringfs --bin ringfs -p ringfs-bench --bin ringfs-bench
exec target/release/ringfs-bench "$mode" --ringfs-bin target/release/ringfs "$@"
