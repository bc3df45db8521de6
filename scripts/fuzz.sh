#!/usr/bin/env bash
# Fuzzes the PDU/PDV reader and the streaming anonymizer with libFuzzer (cargo-fuzz)
# for a fixed budget each, starting from the committed seeds in fuzz/seeds/.
# cargo-fuzz needs nightly features; the stable toolchain provides them with
# RUSTC_BOOTSTRAP=1. A crash leaves its input in fuzz/artifacts/<target>/: commit it
# as a regression test (fuzz/seeds/<target>/ and a unit test beside the code).
#
#     scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
budget=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for target in pdu anonymize_stream; do
  mkdir -p "corpus/$target"  # working corpus (ignored by git); seeds/ is committed
  echo "== $target: ${budget} s"
  cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$budget" -rss_limit_mb=512 -timeout=10 -print_final_stats=1 2>&1 |
    grep -E "^(#[0-9]+ +DONE|stat::|==[0-9]+== ERROR|SUMMARY|Done)" || true
  if ls "artifacts/$target"/crash-* "artifacts/$target"/oom-* "artifacts/$target"/timeout-* >/dev/null 2>&1; then
    echo "$target: failing inputs in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
