#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Installs the real HDFS clients the interop suite drives (idempotent, seconds when
# already installed), then runs every test of the workspace: unit tests, common/'s
# golden-capture and property tests, the fuzz corpus replay, the namenode crash test,
# the datanode suites on both engines, and the real-client interop suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${RINGFS_SKIP_CLIENT_INSTALL:-0}" != 1 ]; then
  bash scripts/install-clients.sh
fi
# shellcheck disable=SC1091
[ -f "${RINGFS_DEPS:-$HOME/.cache/ringfs-deps}/env.sh" ] && . "${RINGFS_DEPS:-$HOME/.cache/ringfs-deps}/env.sh"

# Multi-process cluster tests share two cores: run test binaries one at a time, tests
# inside a binary two at a time.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
# Library, binary and integration tests; benches are compiled by `cargo clippy
# --all-targets` in CI and run by `cargo bench`.
cargo test --workspace --lib --bins --tests "$@"
