#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a while, printing per target
# the executions, executions per second, coverage (libFuzzer's cov/ft) and crashes.
# Exits non-zero if any target crashed, timed out, ran out of memory or failed to run.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      every (or the named) target for SECONDS (60)
#   scripts/fuzz.sh --smoke [TARGET...]        about 20 s per target, for CI
#   scripts/fuzz.sh --list                     the target names
#   scripts/fuzz.sh --merge [TARGET...]        fold new coverage from fuzz/work/corpus into
#                                              the committed seeds (fuzz/corpus), minimised
#   scripts/fuzz.sh --minimize TARGET FILE     minimise a crashing input (prints the result path)
#   scripts/fuzz.sh --replay [TARGET...]       run every stored input (corpus, regressions) once
#                                              through the fuzz build; `cargo test -p ringfs-common`
#                                              replays all but the namenode targets on stable
#
# Options (before the rest): --no-build (reuse the built binaries), --jobs N (run N
# targets at once; default 1: the machine is shared), --keep-going (libFuzzer's fork
# mode: a crash is saved and counted, and fuzzing goes on; for long campaigns).
#
# Inputs: fuzz/corpus/<target> (seeds, read-only) and fuzz/regressions/<target>; new
# inputs go to fuzz/work/corpus/<target>, crashes to fuzz/artifacts/<target>/, logs and
# the summary to fuzz/work/logs/ (FUZZ_LOG_DIR overrides). cargo-fuzz needs nightly flags:
# the stable toolchain accepts them with RUSTC_BOOTSTRAP=1, which this script sets.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/fuzz"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$fuzz_dir/target/$triple/release"
log_dir="${FUZZ_LOG_DIR:-$fuzz_dir/work/logs}"
export RUSTC_BOOTSTRAP=1

all_targets() {
    sed -n 's/^name = "\(.*\)"$/\1/p' "$fuzz_dir/Cargo.toml" | grep -v '^ringfs-fuzz$'
}

dict_for() {
    case "$1" in
        packet*) echo "$fuzz_dir/dict/packet.dict" ;;
        pipeline_ack | dtp_op* | read_status) echo "$fuzz_dir/dict/dtp.dict" ;;
        rpc_*) echo "$fuzz_dir/dict/rpc.dict" ;;
        block_meta) echo "$fuzz_dir/dict/meta.dict" ;;
        edit_log* | image*) echo "$fuzz_dir/dict/namenode.dict" ;;
    esac
}

# Largest input libFuzzer generates: a full 64 KiB data packet must fit for packets and
# meta files; 16 KiB covers several frames and messages elsewhere.
max_len_for() {
    case "$1" in
        packet | block_meta) echo 70000 ;;
        *) echo 16384 ;;
    esac
}

ensure_cargo_fuzz() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "installing cargo-fuzz (crates.io)..." >&2
        cargo install cargo-fuzz >&2 || { echo "cannot install cargo-fuzz" >&2; exit 2; }
    fi
}

build() {
    ensure_cargo_fuzz
    echo "building fuzz targets: $*" >&2
    local target
    for target in "$@"; do
        # -O: optimised; -a: debug assertions and overflow checks stay on; ASan by default.
        (cd "$fuzz_dir" && cargo fuzz build -O -a "$target") >&2 || {
            echo "build of $target failed" >&2
            exit 2
        }
    done
}

# Runs one target; writes its log and a one-line summary "target execs exec/s cov ft corp crashes status".
run_target() {
    local target="$1" seconds="$2"
    local bin="$bin_dir/$target" log="$log_dir/$target.log"
    local work="$fuzz_dir/work/corpus/$target" artifacts="$fuzz_dir/artifacts/$target"
    mkdir -p "$work" "$artifacts" "$fuzz_dir/corpus/$target"
    local before
    before="$(find "$artifacts" -type f | wc -l)"
    local dirs=("$work" "$fuzz_dir/corpus/$target")
    [[ -d "$fuzz_dir/regressions/$target" ]] && dirs+=("$fuzz_dir/regressions/$target")
    local args=(
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096
        -max_len="$(max_len_for "$target")" -print_final_stats=1
        -artifact_prefix="$artifacts/"
    )
    local dict
    dict="$(dict_for "$target")"
    [[ -n "$dict" ]] && args+=(-dict="$dict")
    ((keep_going)) && args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    "$bin" "${args[@]}" "${dirs[@]}" >"$log" 2>&1
    local code=$?
    local after
    after="$(find "$artifacts" -type f | wc -l)"
    local execs rate line cov ft corp status
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    line="$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)"
    # Fork mode prints no final stats: its last status line has the totals.
    [[ -z $execs ]] && execs="$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$line")"
    # ...and its exec/s is the last job's, not the run's: average over the whole run.
    [[ -z $rate && -n $execs ]] && rate=$((execs / seconds))
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$line")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$line")"
    corp="$(sed -n 's/.* corp: \([0-9]*\(\/[0-9A-Za-z]*\)\{0,1\}\).*/\1/p' <<<"$line")"
    status=ok
    if ((code != 0)); then
        if grep -q 'ERROR: libFuzzer: timeout' "$log"; then
            status=timeout
        elif grep -q -e 'panicked' -e 'ERROR: AddressSanitizer' "$log"; then
            status=crash
        elif grep -q -e 'out-of-memory' -e 'allocation of .* exceeds the limit' "$log"; then
            status=oom
        elif grep -q 'deadly signal' "$log"; then
            status=crash
        else
            status="failed($code)"
        fi
    fi
    printf '%s %s %s %s %s %s %s %s\n' "$target" "${execs:-0}" "${rate:-0}" "${cov:-?}" "${ft:-?}" \
        "${corp:-?}" "$((after - before))" "$status"
}

print_table() {
    printf '%-24s %12s %8s %7s %7s %12s %8s  %s\n' target execs exec/s cov ft corpus crashes status
    local target execs rate cov ft corp crashes status
    while read -r target execs rate cov ft corp crashes status; do
        printf '%-24s %12s %8s %7s %7s %12s %8s  %s\n' "$target" "$execs" "$rate" "$cov" "$ft" "$corp" \
            "$crashes" "$status"
    done
}

merge() {
    local target
    for target in "$@"; do
        local work="$fuzz_dir/work/corpus/$target"
        [[ -d "$work" ]] || continue
        mkdir -p "$fuzz_dir/corpus/$target"
        echo "merging $target" >&2
        "$bin_dir/$target" -merge=1 -max_len="$(max_len_for "$target")" -rss_limit_mb=4096 \
            "$fuzz_dir/corpus/$target" "$work" >"$log_dir/$target.merge.log" 2>&1 ||
            echo "merge of $target failed: see $log_dir/$target.merge.log" >&2
    done
}

replay() {
    local target failed=0 known
    for target in "$@"; do
        # Crashes in other areas' code, kept until fixed (then moved to regressions/).
        for known in "$fuzz_dir/known-crashes/$target"/*; do
            [[ -f $known ]] || continue
            if "$bin_dir/$target" -runs=1 "$known" >/dev/null 2>&1; then
                echo "$target: known crash $(basename "$known") no longer reproduces: move it to regressions/"
            else
                echo "$target: known crash $(basename "$known") still reproduces"
            fi
        done
        local dirs=("$fuzz_dir/corpus/$target")
        [[ -d "$fuzz_dir/regressions/$target" ]] && dirs+=("$fuzz_dir/regressions/$target")
        if "$bin_dir/$target" -runs=0 -rss_limit_mb=4096 "${dirs[@]}" >"$log_dir/$target.replay.log" 2>&1; then
            echo "$target: $(grep -c . <(find "${dirs[@]}" -type f)) inputs ok"
        else
            echo "$target: FAILED, see $log_dir/$target.replay.log"
            failed=1
        fi
    done
    return "$failed"
}

minimize() {
    local target="$1" input="$2"
    local out="$fuzz_dir/artifacts/$target/minimized-$(basename "$input")"
    "$bin_dir/$target" -minimize_crash=1 -max_total_time=120 -exact_artifact_path="$out" "$input" \
        >"$log_dir/$target.minimize.log" 2>&1
    echo "$out"
}

main() {
    local seconds=60 build_first=1 jobs=1 mode=run
    keep_going=0
    local targets=()
    while (($#)); do
        case "$1" in
            --smoke) seconds=20 ;;
            --no-build) build_first=0 ;;
            --keep-going) keep_going=1 ;;
            --jobs) jobs="$2"; shift ;;
            --list) all_targets; return 0 ;;
            --merge) mode=merge ;;
            --minimize) mode=minimize ;;
            --replay) mode=replay ;;
            -h | --help) sed -n "2,24p" "$0"; return 0 ;;
            *[!0-9]*) targets+=("$1") ;;
            *) if [[ $mode == run && ${#targets[@]} -eq 0 ]]; then seconds="$1"; else targets+=("$1"); fi ;;
        esac
        shift
    done
    mkdir -p "$log_dir"
    if [[ $mode == minimize ]]; then
        ((${#targets[@]} == 2)) || { echo "usage: $0 --minimize TARGET FILE" >&2; return 2; }
        minimize "${targets[0]}" "${targets[1]}"
        return 0
    fi
    if ((${#targets[@]} == 0)); then
        mapfile -t targets < <(all_targets)
    fi
    local known
    known=" $(all_targets | tr '\n' ' ') "
    local target
    for target in "${targets[@]}"; do
        [[ $known == *" $target "* ]] || { echo "unknown fuzz target: $target" >&2; return 2; }
    done
    ((build_first)) && build "${targets[@]}"
    if [[ $mode == merge ]]; then
        merge "${targets[@]}"
        return 0
    fi
    if [[ $mode == replay ]]; then
        replay "${targets[@]}"
        return
    fi

    local summary="$log_dir/summary.txt"
    : >"$summary.rows"
    echo "fuzzing ${#targets[@]} targets for ${seconds}s each (logs in $log_dir)" >&2
    local running=0
    for target in "${targets[@]}"; do
        run_target "$target" "$seconds" >>"$summary.rows" &
        running=$((running + 1))
        if ((running >= jobs)); then
            wait -n
            running=$((running - 1))
        fi
    done
    wait
    # Keep the order targets were given in.
    local ordered=()
    for target in "${targets[@]}"; do
        ordered+=("$(grep "^$target " "$summary.rows")")
    done
    printf '%s\n' "${ordered[@]}" | print_table | tee "$summary"
    rm -f "$summary.rows"
    local failed
    failed="$(printf '%s\n' "${ordered[@]}" | awk '$7 != 0 || $8 != "ok"' | wc -l)"
    if ((failed > 0)); then
        echo "FAILED: $failed target(s) crashed or failed; inputs in fuzz/artifacts/<target>/" >&2
        return 1
    fi
    echo "no crashes" >&2
}

main "$@"
