#!/usr/bin/env bash
# Benchmark: `commit` of a 1 GiB overlay (~300 MiB of data in 1 MiB pieces) into its 1 GiB base, and `rebase`
# (safe mode) of the same overlay onto a different 1 GiB base, qemu-img versus ./qcow4j, timed in the same run with
# the tools interleaved.
#
#   bench/commit.sh              # 3 rounds per job
#   ROUNDS=5 bench/commit.sh
#
# The images are built once under bench/work/ (ops-*.qcow2) and reused; `rm bench/work/ops-*` rebuilds them. Each
# timed run works on fresh copies (made and synced untimed), since both commands change their images.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
VERSION_RUNS="${VERSION_RUNS:-10}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work"
BASE="$WORK/ops-base.qcow2"       # 1 GiB, ~60% random data
OTHER="$WORK/ops-other.qcow2"     # 1 GiB, another ~60% (rebase's new base)
TOP="$WORK/ops-top.qcow2"         # overlay of BASE, ~300 MiB written
RUN="$WORK/ops-run"               # the copies a timed run changes
OUT="$RUN/unused"                 # lib.sh's prepare removes $OUT
ERR="$WORK/stderr-ops.txt"
CHECK="$WORK/check-ops.txt"

MIB=$((1024 * 1024))
SEED=7

. "$ROOT/bench/lib.sh"

# A qemu-io script writing 1 MiB pieces of pattern data at about `percent` of the 1024 MiB, fixed seed.
writes() {
  local percent=$1 pattern=$2 i
  RANDOM=$(( SEED + pattern ))
  for (( i = 0; i < 1024; i++ )); do
    (( RANDOM % 100 < percent )) && printf -- '-c\nwrite -P %d %dM 1M\n' "$(( (i + pattern) % 250 + 1 ))" "$i"
  done
}

make_images() {
  mkdir -p "$WORK" "$RUN"
  [ -f "$TOP" ] && return
  log "building $BASE, $OTHER, $TOP"
  rm -f "$BASE" "$OTHER" "$TOP"
  qemu-img create -q -f qcow2 "$BASE.tmp" 1G
  mapfile -t args < <(writes 60 1); qemu-io "${args[@]}" "$BASE.tmp" >/dev/null
  qemu-img create -q -f qcow2 "$OTHER.tmp" 1G
  mapfile -t args < <(writes 60 2); qemu-io "${args[@]}" "$OTHER.tmp" >/dev/null
  mv "$BASE.tmp" "$BASE"; mv "$OTHER.tmp" "$OTHER"
  qemu-img create -q -f qcow2 -b ops-base.qcow2 -F qcow2 "$TOP.tmp"
  mapfile -t args < <(writes 30 3); qemu-io "${args[@]}" "$TOP.tmp" >/dev/null
  qemu-img rebase -u -b ops-base.qcow2 -F qcow2 "$TOP.tmp"
  mv "$TOP.tmp" "$TOP"
}

# Untimed: fresh copies of the chain in $RUN, synced.
fresh_copies() {
  rm -f "$RUN"/*
  cp "$BASE" "$OTHER" "$RUN/"
  cp "$TOP" "$RUN/ops-top.qcow2"
  sync
}

run_tool() {
  local job=$1 tool=$2 img
  [ "$tool" = ref ] && img=qemu-img || img=./qcow4j
  case $job in
    commit) $img commit -q "$RUN/ops-top.qcow2" ;;
    rebase) $img rebase -b ops-other.qcow2 -F qcow2 "$RUN/ops-top.qcow2" ;;
  esac
}

# Times one tool on fresh copies.
timed_fresh() { fresh_copies; timed "$@"; }

# After a run: the result reads as the chain read before (qemu-img compare against the pristine overlay), clean.
check_result() {
  local job=$1 tool=$2 img=$RUN/ops-top.qcow2
  [ "$job" = commit ] && img=$RUN/ops-base.qcow2
  qemu-img check "$img" >"$CHECK" 2>&1 || { cat "$CHECK" >&2; die "CHECK FAILED after $job by $tool"; }
  qemu-img compare "$TOP" "$img" >"$CHECK" 2>&1 || { cat "$CHECK" >&2; die "MISMATCH after $job by $tool"; }
  log "$job by $tool: checked (clean, reads as the overlay did)"
}

bench_job() {
  local tool
  JOB=$1
  for tool in ref qcow4j; do
    timed_fresh run_job_tool "$tool"
    check_result "$JOB" "$tool"
  done
  interleave_rounds "$JOB" timed_fresh run_job_tool ref qcow4j
}

run_job_tool() { run_tool "$JOB" "$1"; }

main() {
  check_tools qemu-img qemu-io java awk cp sync
  make_images
  ./qcow4j --version >/dev/null
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  local rows=() job
  for job in commit rebase; do
    bench_job "$job"
    rows+=("$(printf '%-7s %9s %9s %6s   %s' "$job" "$MEAN_ref" "$MEAN_qcow4j" \
      "$(awk -v a="$MEAN_ref" -v b="$MEAN_qcow4j" 'BEGIN { printf "%.2f", a / b }')" "$MIN_ref/$MIN_qcow4j")")
  done
  bench_startup
  rm -f "$RUN"/*
  echo
  echo "commit of a 1 GiB overlay (~300 MiB data) into its 1 GiB base; safe rebase of it onto another 1 GiB base"
  echo "mean wall seconds of $ROUNDS rounds (tools interleaved, fresh copies each run, after an untimed check round)"
  echo "ratio = qemu-img / qcow4j (> 1.00: qcow4j faster)"
  echo
  printf '%-7s %9s %9s %6s   %s\n' job qemu-img qcow4j ratio "min qemu/qcow4j"
  printf '%s\n' "${rows[@]}"
  echo
  echo "./qcow4j --version (JVM start-up): mean $STARTUP_MEAN s, min $STARTUP_MIN s over $VERSION_RUNS runs"
  machine "qemu:    $(qemu-img --version | head -n 1)"
}

main "$@"
