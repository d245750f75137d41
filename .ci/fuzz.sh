#!/usr/bin/env bash
# Fuzzes Hearth's input parsers with cargo-fuzz (libFuzzer): builds every
# target in fuzz/ and runs each for FUZZ_SECONDS (default 60) from the seeds
# in fuzz/corpus/<target>/. Exits non-zero if any target crashes, leaks past
# the memory limit or spends more than FUZZ_TIMEOUT seconds on one input;
# the input that did it is kept in fuzz/artifacts/<target>/.
#
# Works on stable Rust: cargo-fuzz passes nightly-only -Z flags, which
# RUSTC_BOOTSTRAP=1 unlocks on a stable compiler. Settings (environment):
#   FUZZ_SECONDS    run time per target (60)
#   FUZZ_TARGETS    space-separated targets (all of `cargo fuzz list`)
#   FUZZ_SANITIZER  address (default; works on stable too) | none (faster
#                   runs, but unsafe code in dependencies goes unchecked)
#   FUZZ_TIMEOUT    seconds one input may take (10)
#   FUZZ_RSS_MB     memory limit of the fuzzing process (2048)
#   CARGO_TARGET_DIR  where to build (fuzz/target by default)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-10}"
FUZZ_RSS_MB="${FUZZ_RSS_MB:-2048}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    # Installed into cargo's bin directory, which persists between runs.
    cargo install cargo-fuzz --locked
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

cd fuzz
start=$SECONDS
if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    TARGETS="${FUZZ_TARGETS}"
    for target in ${TARGETS}; do
        cargo fuzz build -O -s "${FUZZ_SANITIZER}" "${target}"
    done
else
    TARGETS="$(cargo fuzz list)"
    cargo fuzz build -O -s "${FUZZ_SANITIZER}"
fi
echo "<== fuzz build: $((SECONDS - start))s"

failed=()
for target in ${TARGETS}; do
    # New inputs go to a scratch corpus; the checked-in seeds stay as they are.
    work="corpus-work/${target}"
    mkdir -p "${work}" "corpus/${target}"
    start=$SECONDS
    echo "==> fuzz ${target} for ${FUZZ_SECONDS}s"
    if cargo fuzz run -O -s "${FUZZ_SANITIZER}" "${target}" "${work}" "corpus/${target}" -- \
        -max_total_time="${FUZZ_SECONDS}" -timeout="${FUZZ_TIMEOUT}" \
        -rss_limit_mb="${FUZZ_RSS_MB}" -print_final_stats=1; then
        echo "<== fuzz ${target}: $((SECONDS - start))s, no crash"
    else
        echo "<== fuzz ${target}: FAILED after $((SECONDS - start))s; see fuzz/artifacts/${target}/" >&2
        failed+=("${target}")
    fi
done

if ((${#failed[@]})); then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzzing: no crashes in ${TARGETS//$'\n'/ }"
