#!/usr/bin/env bash
# Runs every fuzz target in e2e/fuzz for a fixed time each: `make fuzz`
# (FUZZ_SECONDS, default 60; CI runs 30). A target that crashes, leaks,
# times out or grows past the memory limit fails the run; libFuzzer prints
# the input, and cargo-fuzz writes it to e2e/fuzz/artifacts/<target>/.
#
# libFuzzer needs compiler flags of a nightly toolchain; the one toolchain
# here takes them with RUSTC_BOOTSTRAP=1.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deps=${BERTH_DEPS_DIR:-$top/.deps}
seconds=${1:-60}
shift || true
targets=("$@")
fuzz_dir=$top/e2e/fuzz

bash "$top/e2e/scripts/install-deps.sh" fuzz
export PATH=$deps/cargo-fuzz/bin:$PATH
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$top/target/fuzz

if [ ${#targets[@]} -eq 0 ]; then
  list=$(cargo fuzz list --fuzz-dir "$fuzz_dir")
  mapfile -t targets <<<"$list"
fi
[ ${#targets[@]} -gt 0 ] && [ -n "${targets[0]}" ] || { echo "fuzz: no targets" >&2; exit 1; }

cargo fuzz build --fuzz-dir "$fuzz_dir"
for t in "${targets[@]}"; do
  # New inputs go to a corpus under target/; the committed seeds are read.
  corpus=$top/target/fuzz/corpus/$t
  mkdir -p "$corpus"
  seeds=()
  [ -d "$fuzz_dir/seeds/$t" ] && seeds=("$fuzz_dir/seeds/$t")
  printf 'fuzz: %s for %ss\n' "$t" "$seconds"
  cargo fuzz run --fuzz-dir "$fuzz_dir" "$t" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -max_len=65536 -timeout=10 -print_final_stats=1
done
printf 'fuzz: %d targets ran %ss each without a finding\n' "${#targets[@]}" "$seconds"
