#!/usr/bin/env bash
# scripts/fuzz.sh - build and run every fuzz target of fuzz/ (cargo-fuzz,
# libFuzzer) for a bounded time each. Run from anywhere:
#
#   scripts/fuzz.sh                     # every target, 20 s each
#   WEIR_FUZZ_SECONDS=300 scripts/fuzz.sh record
#
# Targets (fuzz/fuzz_targets/): record (the stored record batches and the
# binary wire encoding),
# ws_frames (WebSocket client frames), request_bodies (every HTTP request
# body through the server's JSON reader and validation).
#
# Runs on stable Rust: `-s none` builds without a sanitizer (nightly-only);
# libFuzzer's coverage instrumentation is stable. cargo-fuzz is installed
# into .tools/cargo-fuzz (git-ignored) on first use. Each run starts from
# the committed seeds (fuzz/seeds/<target>) and keeps what it finds in
# .tools/fuzz-corpus/<target>; a crash leaves its input in
# fuzz/artifacts/<target>/ (reproduce: cargo fuzz run -s none <target> <file>).
#
# Environment:
#   WEIR_FUZZ_SECONDS=N   seconds per target (default 20)
#   WEIR_FUZZ_TARGET_DIR  build directory (default $HOME/.cache/weir-fuzz-target;
#                         never the Makefile's CARGO_TARGET_DIR: instrumented
#                         builds would evict its artifacts)
#
# Prints one line per target and ends with "fuzz: N passed, N failed";
# exit 1 when any target crashed or did not build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SECONDS_PER_TARGET=${WEIR_FUZZ_SECONDS:-20}
TOOLS=$ROOT/.tools/cargo-fuzz
CARGO_FUZZ=$TOOLS/bin/cargo-fuzz
CORPUS=$ROOT/.tools/fuzz-corpus
export CARGO_TARGET_DIR=${WEIR_FUZZ_TARGET_DIR:-$HOME/.cache/weir-fuzz-target}
# Link Debian's librocksdb-dev, as the workspace's .cargo/config.toml says
# (fuzz/ is its own workspace; fuzz/.cargo/config.toml repeats it too).
export ROCKSDB_LIB_DIR=${ROCKSDB_LIB_DIR:-/usr/lib}
export ROCKSDB_INCLUDE_DIR=${ROCKSDB_INCLUDE_DIR:-/usr/include}
export SNAPPY_LIB_DIR=${SNAPPY_LIB_DIR:-/usr/lib}

case "$SECONDS_PER_TARGET" in '' | *[!0-9]*)
  echo "fuzz: WEIR_FUZZ_SECONDS must be a whole number of seconds" >&2; exit 2 ;;
esac

if [ ! -x "$CARGO_FUZZ" ]; then
  echo "installing cargo-fuzz into ${TOOLS#"$ROOT"/}"
  cargo install --locked --quiet cargo-fuzz --root "$TOOLS"
fi

all_targets=$("$CARGO_FUZZ" list --fuzz-dir "$ROOT/fuzz")
targets=${*:-$all_targets}

# One build of every target (the runs below then start at once).
echo "building the fuzz targets (release, coverage-instrumented) in $CARGO_TARGET_DIR"
if ! "$CARGO_FUZZ" build --fuzz-dir "$ROOT/fuzz" -s none; then
  echo "fuzz: the targets do not build"
  exit 1
fi

passed=0
failed=0
results=()
for target in $targets; do
  if ! grep -qx "$target" <<<"$all_targets"; then
    echo "fuzz: no target \`$target\` (targets: $(echo $all_targets))" >&2
    exit 2
  fi
  log=$(mktemp)
  mkdir -p "$CORPUS/$target"
  t0=$SECONDS
  set +e
  "$CARGO_FUZZ" run --fuzz-dir "$ROOT/fuzz" -s none "$target" \
    "$CORPUS/$target" "$ROOT/fuzz/seeds/$target" \
    -- -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    results+=("ok   - $target: ${runs:-?} runs in $((SECONDS - t0)) s, no crash")
  else
    failed=$((failed + 1))
    results+=("FAIL - $target: exit $rc after $((SECONDS - t0)) s (see below)")
    echo "---- $target (exit $rc) ----"
    tail -60 "$log"
  fi
  rm -f "$log"
done
printf '%s\n' "${results[@]}"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
