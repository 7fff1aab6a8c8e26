#!/usr/bin/env bash
# Fuzz edge_core's pure protocol code with cargo-fuzz (libFuzzer + AddressSanitizer, nightly).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to $FUZZ_SECONDS, else 300; targets default to all of them
# (edge_core/fuzz/fuzz_targets). Installs the nightly toolchain and cargo-fuzz only when missing.
# The working corpus (edge_core/fuzz/corpus, git-ignored) starts from seeds.py and keeps what the
# fuzzer finds between local runs. Prints, per target, the executions reached and the crashes
# (inputs under edge_core/fuzz/artifacts/<target>/); exits 1 when any target crashed.
set -euo pipefail
cd "$(dirname "$0")/../edge_core/fuzz"
seconds=${1:-${FUZZ_SECONDS:-300}}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(codec handshake inflate msgpack utf8)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
PY=${PY:-python3}

start=$(date +%s)
echo "fuzz: building the targets (nightly, address sanitizer, debug assertions)"
mkdir -p target
cargo +nightly fuzz build >/dev/null 2>target/fuzz-build.log || {
    cat target/fuzz-build.log >&2
    exit 1
}
build_s=$(($(date +%s) - start))
"$PY" seeds.py corpus
mkdir -p target/fuzz-logs

failed=0
rows=()
for t in "${targets[@]}"; do
    log=target/fuzz-logs/$t.log
    mkdir -p "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    extra=()
    [ -f "$t.dict" ] && extra+=("-dict=$t.dict")
    # -timeout: a run slower than 10 s is a finding; -rss_limit_mb: libFuzzer's default 2 GiB.
    set +e
    cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "corpus/$t" -type f 2>/dev/null | wc -l || true)
    crashes=$(($(find "artifacts/$t" -type f | wc -l) - before))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes="error (exit $rc)"
    fi
    if [ "$rc" -ne 0 ]; then
        failed=1
        echo "fuzz: $t FAILED, see $PWD/$log" >&2
        grep -E "panicked|SUMMARY|Test unit written" "$log" | head -5 >&2 || true
    fi
    rows+=("$(printf '| %-9s | %5s | %12s | %7s | %6s | %s |' "$t" "${seconds}s" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes")")
done

echo
echo "| target    |  time |   executions |  exec/s | corpus | crashes |"
echo "|-----------|-------|--------------|---------|--------|---------|"
printf '%s\n' "${rows[@]}"
echo
echo "fuzz: build ${build_s}s, total $(($(date +%s) - start))s"
exit "$failed"
