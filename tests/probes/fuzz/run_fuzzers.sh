#!/usr/bin/env bash
# Builds the libFuzzer targets (the probes' protocol and trace importers, the
# harness's HTTP/1.1 response parser) with clang (no CMake, a few seconds) and
# runs each for a short time from its corpus. gcc has no libFuzzer; CTest
# replays the same corpus through the gcc-built replay driver instead.
#   tests/probes/fuzz/run_fuzzers.sh [SECONDS_PER_TARGET=20] [BUILD_DIR=build/libfuzzer]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
seconds="${1:-20}"
# libFuzzer reads -max_total_time=0 as "no limit": only a positive whole number is a time box.
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "run_fuzzers: SECONDS must be a positive integer, got '$seconds'"; exit 2; }
out="${2:-$root/build/libfuzzer}"
cxx="${CXX_FUZZ:-clang++}"
command -v "$cxx" >/dev/null || { echo "run_fuzzers: $cxx not found (scripts/setup installs clang)"; exit 1; }
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$root/probes/control/include" -I"$root/probes/analysis/include" -I"$root/probes/agent/include"
       -I"$root/results/include" -I"$root/workloads/include" -I"$root/harness/include")
libc_sources=("$root/probes/control/src/protocol.cpp" "$root/probes/control/src/stage_rules.cpp")
analysis_sources=("$root"/probes/analysis/src/{trace,raw_reader,rules,breakdown,chrome_trace,nsys_import,report,session,live}.cpp
                  "$root/probes/control/src/client.cpp" "$root/results/src/atomic_file.cpp")
echo "run_fuzzers: building with $cxx"
"$cxx" "${flags[@]}" "${libc_sources[@]}" "$root/tests/probes/fuzz/fuzz_protocol.cpp" -o "$out/fuzz_protocol"
"$cxx" "${flags[@]}" "${libc_sources[@]}" "${analysis_sources[@]}" "$root/tests/probes/fuzz/fuzz_trace_import.cpp" \
  -lfmt -lsqlite3 -o "$out/fuzz_trace_import"
"$cxx" "${flags[@]}" "$root/harness/src/http1.cpp" "$root/tests/harness/fuzz/fuzz_http1.cpp" \
  -lfmt -o "$out/fuzz_http1"
for target in protocol trace_import http1; do
  corpus="$out/corpus-$target"
  mkdir -p "$corpus"
  seeds="$root/tests/probes/fuzz/corpus/$target"
  [[ "$target" == http1 ]] && seeds="$root/tests/harness/fuzz/corpus/$target"
  cp -n "$seeds/"* "$corpus/" 2>/dev/null || true
  echo "run_fuzzers: $target for ${seconds}s"
  # The whole output goes to a log (a sanitizer report is long); the summary is printed, and on
  # a failure the log too, so CI shows the stack.
  if ! "$out/fuzz_$target" "$corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$out/$target-" >"$out/$target.log" 2>&1; then
    cat "$out/$target.log"
    echo "run_fuzzers: $target FAILED (input kept as $out/$target-*; log $out/$target.log)"
    exit 1
  fi
  tail -n 12 "$out/$target.log"
done
