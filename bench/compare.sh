#!/usr/bin/env bash
# Benchmark: `compare` of two 1 GiB qcow2 images holding the same guest data in different layouts, qemu-img versus
# ./qcow4j, timed in the same run with the tools interleaved. The data: 1 GiB virtual, in 4 MiB stripes whose first
# 2-4 MiB are data (half text, half random) and the rest a hole, so ~600 MiB is compared and the holes are skipped.
#   same  a.qcow2 (64 KiB clusters) against b.qcow2 (1 MiB clusters): "Images are identical."
#   diff  a.qcow2 against c.qcow2, b with one sector changed 1 MiB before the end: "Content mismatch at offset N!"
#
#   bench/compare.sh              # 5 rounds per job
#   ROUNDS=3 bench/compare.sh
#
# The images are built once under bench/work/ (compare-*.qcow2, ~600 MiB each) and reused;
# `rm bench/work/compare-*` rebuilds them.
set -euo pipefail

ROUNDS="${ROUNDS:-5}"
VERSION_RUNS="${VERSION_RUNS:-10}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work"
A="$WORK/compare-a.qcow2"
B="$WORK/compare-b.qcow2"
C="$WORK/compare-c.qcow2"
OTHER=""                          # the second image of the job being timed
OUT="$WORK/compare-unused"        # lib.sh's prepare removes $OUT: compare writes nothing
ERR="$WORK/stderr-compare.txt"
RUNOUT="$WORK/compare-stdout.txt" # a run's report line

MIB=$((1024 * 1024))
CHUNK_MIB=1
DISK_MIB=1024
STRIPE_MIB=4
SEED=4343

# die, log, check_tools, text_chunk, prepare, timed, interleave_rounds, mean_s, min_s, bench_startup, machine
. "$ROOT/bench/lib.sh"

make_images() {
  local raw=$WORK/compare.raw.tmp i n k
  mkdir -p "$WORK"
  [ -f "$A" ] && [ -f "$B" ] && [ -f "$C" ] && return
  log "building $A, $B and $C (1 GiB virtual, ~600 MiB data; a minute or two)"
  rm -f "$raw" "$A.tmp" "$B.tmp" "$C.tmp"
  truncate -s "$((DISK_MIB * MIB))" "$raw"
  RANDOM=$SEED
  for (( i = 0; i < DISK_MIB / STRIPE_MIB; i++ )); do
    n=$(( 2 + RANDOM % 3 ))
    for (( k = 0; k < n; k++ )); do
      text_chunk "$(( i * STRIPE_MIB + k ))" | dd of="$raw" bs="$MIB" seek="$(( i * STRIPE_MIB + k ))" conv=notrunc \
        iflag=fullblock status=none
    done
  done
  qemu-img convert -f raw -O qcow2 "$raw" "$A.tmp"
  qemu-img convert -f raw -O qcow2 -o cluster_size=1M "$raw" "$B.tmp"
  cp "$B.tmp" "$C.tmp"
  qemu-io -f qcow2 -c "write -P 0x5a $(( (DISK_MIB - 1) * MIB )) 512" "$C.tmp" >/dev/null
  rm -f "$raw"
  mv "$A.tmp" "$A"
  mv "$B.tmp" "$B"
  mv "$C.tmp" "$C"
}

# compare exits 1 when the images differ: that is a result, not a failure.
run_tool() {
  local rc=0
  case $1 in
    qemu)   qemu-img compare "$A" "$OTHER" >"$RUNOUT" || rc=$? ;;
    qcow4j) ./qcow4j compare "$A" "$OTHER" >"$RUNOUT" || rc=$? ;;
  esac
  (( rc <= 1 )) || return "$rc"
  echo "exit $rc" >>"$RUNOUT"
}

# Untimed round, one run per tool, which doubles as the correctness check: the same line and exit code.
check_round() {
  local name=$1
  timed run_tool qemu
  cp "$RUNOUT" "$RUNOUT.qemu"
  timed run_tool qcow4j
  diff "$RUNOUT.qemu" "$RUNOUT" >&2 || die "$name: ./qcow4j compare printed another result than qemu-img compare"
  log "$name: $(head -n 1 "$RUNOUT") ($(tail -n 1 "$RUNOUT")) from both"
  rm -f "$RUNOUT.qemu"
}

main() {
  check_tools qemu-img qemu-io java awk dd head truncate diff seq base64
  make_images
  ./qcow4j --version >/dev/null
  cat "$A" "$B" "$C" >/dev/null
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

  local name rows=()
  for name in same diff; do
    if [ "$name" = same ]; then OTHER=$B; else OTHER=$C; fi
    check_round "$name"
    interleave_rounds "$name" timed run_tool qemu qcow4j
    rows+=("$(printf '%-6s %9s %9s %7s   %s/%s' "$name" "$MEAN_qemu" "$MEAN_qcow4j" \
      "$(awk -v a="$MEAN_qemu" -v b="$MEAN_qcow4j" 'BEGIN { printf "%.2f", a / b }')" "$MIN_qemu" "$MIN_qcow4j")")
  done
  bench_startup

  echo
  echo "compare of two 1 GiB qcow2 images (~600 MiB data, 64 KiB against 1 MiB clusters), mean wall seconds of $ROUNDS rounds"
  echo "(whole commands, JVM start-up included; tools interleaved, after an untimed round; page cache warm)"
  echo "ratio = qemu-img / qcow4j (> 1.00: qcow4j faster)"
  echo
  printf '%-6s %9s %9s %7s   %s\n' job qemu-img qcow4j ratio "min qemu-img/qcow4j"
  printf '%s\n' "${rows[@]}"
  echo
  echo "./qcow4j --version (JVM start-up): mean $STARTUP_MEAN s, min $STARTUP_MIN s over $VERSION_RUNS runs"
  if (( REBUILDS > 0 )); then
    echo "note: $REBUILDS qcow4j run(s) were repeated because the launcher rebuilt the jar (sources changed)"
  fi
  echo
  machine "qemu:    $(qemu-img --version | head -n 1)"
}

main "$@"
