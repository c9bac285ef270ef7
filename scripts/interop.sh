#!/usr/bin/env bash
# Runs the real-client interop suite (tests/interop_*.rs) against fresh `ringfs cluster`s:
# hadoop fs, the Java DistributedFileSystem API, snakebite, hdfs-native (Rust and Python)
# and Spark. Installs the clients first (idempotent; seconds when already there).
#
# Usage: scripts/interop.sh [LIBTEST ARGS...]   (a test-name filter, --nocapture, ...)
#   scripts/interop.sh                  every interop test
#   scripts/interop.sh snakebite        only tests whose name contains "snakebite"
# Environment: RINGFS_TEST_ENGINE=threads|uring runs the datanodes on that engine (default:
# their own default, auto). RINGFS_KEEP_TEST_DIRS=1 keeps cluster directories (logs) of passing tests
# too; failing tests always keep theirs and print where. CI=true turns a missing client
# into a failure instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${RINGFS_SKIP_CLIENT_INSTALL:-0}" != 1 ]; then
  bash scripts/install-clients.sh --quiet
fi
# shellcheck disable=SC1091
. "${RINGFS_DEPS:-$HOME/.cache/ringfs-deps}/env.sh"

export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
tests=()
for file in tests/interop_*.rs; do
  tests+=(--test "$(basename "$file" .rs)")
done
start=$(date +%s)
status=0
cargo test --no-fail-fast -p ringfs "${tests[@]}" -- "$@" || status=$?
echo "interop suite: $(( $(date +%s) - start )) s"
exit $status
