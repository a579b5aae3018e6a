#!/usr/bin/env bash
# Benchmark: 4 KiB writes and reads at scattered offsets of a 1 GiB qcow2 image (64 KiB clusters),
# 1 and 2 in flight, qemu-img / qemu-io versus ./qcow4j, timed in the same run with the tools interleaved.
#
#   bench/random-io.sh              # 3 rounds
#   ROUNDS=5 bench/random-io.sh
#   JOBS="read-d1 io-fresh" bench/random-io.sh     # some jobs only (names below)
#
# Two flavours:
#   bench  `qemu-img bench -w -c N -d D -s 4096 -S STEP IMG` against `./qcow4j bench` with the same arguments:
#          writes on a fresh image (every request allocates a cluster), writes on a fully allocated image
#          (rewrites), reads of the fully allocated image; -d 1 and -d 2 each.
#   io     truly random offsets: a file of `write -P 0xNN OFF 4k` lines piped to `qemu-io -f qcow2 IMG`
#          and to `./qcow4j io -q -f qcow2 IMG`, on a fresh and on a fully allocated image (skipped, with a
#          message, when `./qcow4j io` does not work).
#
# The images and command files are built once under bench/work/ (rio-*) and reused; `rm bench/work/rio-*`
# rebuilds them.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
VERSION_RUNS="${VERSION_RUNS:-10}"

# Work from the repo root whatever the caller's directory is.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work"
EMPTY="$WORK/rio-empty.qcow2"   # 1 GiB, nothing allocated: the template of every "fresh" run
FULL="$WORK/rio-full.qcow2"     # 1 GiB, every cluster allocated (0x5a): read, and copied for rewrites
IMG="$WORK/rio-img.qcow2"       # what a write run writes: a fresh copy of EMPTY, or a copy of FULL
CMDS=""                         # the io flavour's commands: $WORK/rio-cmds-N.txt, N writes
RUNOUT="$WORK/rio-stdout.txt"   # a run's stdout (for bench's "Run completed in" time)
OUT="$WORK/rio-unused"          # lib.sh's prepare removes $OUT: nothing here uses it
ERR="$WORK/stderr-rio.txt"
CHECK="$WORK/check-rio.txt"     # output of qemu-img check / compare, shown when they fail

MIB=$((1024 * 1024))
DISK=$((1024 * MIB))
BLOCKS=$((DISK / 4096))         # 262144 4 KiB blocks, 16384 64 KiB clusters

# The step of the bench flavour: 167117 blocks of 4 KiB (684511232 bytes, < INT_MAX as -S requires).
# qemu-img bench 7.2 wraps with `offset = (offset + step) % image_size`: with the image size and the step
# both multiples of 4096 every offset is a multiple of 4096 and a whole request fits (an offset in the last
# 4 KiB would make qemu-img fail the request with EIO). 167117 is odd, so the walk is a permutation of all
# 262144 blocks; among odd steps near 2^18 / golden ratio it is the one whose first 16384 requests fall in the
# most distinct clusters (16380 of 16384; 13 mod 16, so the place inside the cluster changes every time).
STEP=$((167117 * 4096))
ALLOC_COUNT=16384               # allocating writes: one per cluster, the image ends fully allocated
REWRITE_COUNT=30000             # qemu-img: ~1.4 s at -d 1 on the reference machine
READ_COUNT=100000               # qemu-img: ~2 s at -d 1
IO_FRESH_COUNT=3000             # qemu-io: ~2 s on a fresh image (allocating writes cost it ~0.6 ms each)
IO_FULL_COUNT=10000             # qemu-io: ~1.5 s on the allocated image
SEED=4242                       # the io commands' offsets and patterns

ALL_JOBS="alloc-d1 alloc-d2 rewrite-d1 rewrite-d2 read-d1 read-d2 io-fresh io-full"
JOBS="${JOBS:-$ALL_JOBS}"

# die, log, check_tools, prepare, timed, interleave_rounds, mean_s, min_s, bench_startup, machine
. "$ROOT/bench/lib.sh"

# Before each timed run (lib.sh's timed calls prepare, also when it repeats a run): a write job on a fresh
# image gets a fresh copy of $EMPTY (tiny); then sync, so no writeback of the previous run is timed.
FRESH=""
prepare() {
  rm -f "$OUT"
  if [ -n "$FRESH" ]; then
    cp "$FRESH" "$IMG"
  fi
  sync
}

# ---------------------------------------------------------------------------------------------------------
# Images and commands
# ---------------------------------------------------------------------------------------------------------

make_images() {
  mkdir -p "$WORK"
  if [ ! -f "$EMPTY" ]; then
    log "building $EMPTY"
    qemu-img create -q -f qcow2 -o cluster_size=65536 "$EMPTY.tmp" 1G
    mv "$EMPTY.tmp" "$EMPTY"
  fi
  if [ ! -f "$FULL" ]; then
    log "building $FULL (1 GiB, every cluster allocated)"
    qemu-img create -q -f qcow2 -o cluster_size=65536 "$FULL.tmp" 1G
    qemu-io -f qcow2 -c "write -P 0x5a 0 1G" "$FULL.tmp" >/dev/null
    mv "$FULL.tmp" "$FULL"
  fi
  local n cmds
  for n in "$IO_FRESH_COUNT" "$IO_FULL_COUNT"; do
    cmds=$WORK/rio-cmds-$n.txt
    [ -f "$cmds" ] && continue
    log "writing $cmds ($n writes of 4 KiB at random 4 KiB-aligned offsets, random patterns)"
    awk -v n="$n" -v seed="$SEED" -v blocks="$BLOCKS" 'BEGIN {
      srand(seed)
      for (i = 0; i < n; i++) printf "write -P 0x%02x %d 4k\n", int(rand() * 256), int(rand() * blocks) * 4096
    }' > "$cmds.tmp"
    mv "$cmds.tmp" "$cmds"
  done
}

# Whether ./qcow4j io takes qemu-io commands on stdin (it is being written): one write, checked by qemu-img.
io_works() {
  local probe=$WORK/rio-probe.qcow2 want=$WORK/rio-probe-want.qcow2 ok=1
  qemu-img create -q -f qcow2 "$probe" 1M
  cp "$probe" "$want"
  qemu-io -f qcow2 -c "write -P 0x07 4096 4k" "$want" >/dev/null
  if echo "write -P 0x07 4096 4k" | ./qcow4j io -q -f qcow2 "$probe" >"$CHECK" 2>&1 \
      && qemu-img compare -q "$want" "$probe" >>"$CHECK" 2>&1; then
    ok=0
  fi
  rm -f "$probe" "$want"
  return $ok
}

# ---------------------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------------------

# Sets, for job $1: KIND (bench or io), ARGS (bench's options), CMDS (io's commands), SRC (the image the job
# starts from),
# FRESH_JOB (1: every run starts from a fresh copy of SRC; 0: the runs share one copy, or read SRC itself)
# and WRITES (1 or 0).
job() {
  case $1 in
    alloc-d1)   KIND=bench ARGS="-w -c $ALLOC_COUNT -d 1" SRC=$EMPTY FRESH_JOB=1 WRITES=1 ;;
    alloc-d2)   KIND=bench ARGS="-w -c $ALLOC_COUNT -d 2" SRC=$EMPTY FRESH_JOB=1 WRITES=1 ;;
    rewrite-d1) KIND=bench ARGS="-w -c $REWRITE_COUNT -d 1" SRC=$FULL FRESH_JOB=0 WRITES=1 ;;
    rewrite-d2) KIND=bench ARGS="-w -c $REWRITE_COUNT -d 2" SRC=$FULL FRESH_JOB=0 WRITES=1 ;;
    read-d1)    KIND=bench ARGS="-c $READ_COUNT -d 1" SRC=$FULL FRESH_JOB=0 WRITES=0 ;;
    read-d2)    KIND=bench ARGS="-c $READ_COUNT -d 2" SRC=$FULL FRESH_JOB=0 WRITES=0 ;;
    io-fresh)   KIND=io ARGS="" SRC=$EMPTY FRESH_JOB=1 WRITES=1 CMDS=$WORK/rio-cmds-$IO_FRESH_COUNT.txt ;;
    io-full)    KIND=io ARGS="" SRC=$FULL FRESH_JOB=0 WRITES=1 CMDS=$WORK/rio-cmds-$IO_FULL_COUNT.txt ;;
    *) die "unknown job '$1' (jobs: $ALL_JOBS)" ;;
  esac
  if [ "$KIND" = bench ]; then
    ARGS="$ARGS -s 4096 -S $STEP"
  fi
}

# The image a run of the current job works on.
job_image() { if (( WRITES )); then echo "$IMG"; else echo "$SRC"; fi; }

# One tool on the current job; its stdout goes to $RUNOUT.
run_tool() {
  local tool=$1 img
  img=$(job_image)
  case $KIND/$tool in
    # shellcheck disable=SC2086  # ARGS is a list of options
    bench/qemu)   qemu-img bench $ARGS "$img" >"$RUNOUT" ;;
    # shellcheck disable=SC2086
    bench/qcow4j) ./qcow4j bench $ARGS "$img" >"$RUNOUT" ;;
    # qemu-io 7.2 has no -q: its two lines per write go to $RUNOUT.
    io/qemu)      qemu-io -f qcow2 "$img" <"$CMDS" >"$RUNOUT" ;;
    io/qcow4j)    ./qcow4j io -q -f qcow2 "$img" <"$CMDS" >"$RUNOUT" ;;
  esac
}

# Times one run (lib.sh's timed), then keeps bench's own "Run completed in S seconds." time in INNER_tool.
timed_run() {
  local tool=$2 s
  timed "$@"
  if [ "$KIND" = bench ]; then
    s=$(sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' "$RUNOUT")
    [ -n "$s" ] || die "no 'Run completed' line from $tool: $(cat "$RUNOUT")"
    eval "INNER_$tool+=($(awk -v s="$s" 'BEGIN { printf "%.0f", s * 1e9 }'))"
  fi
}

# Untimed round, one run per tool, which doubles as the correctness check (the script stops if it fails):
#   bench: both print the same lines but the time; after a write run qemu-img check finds qcow4j's image clean
#          and qemu-img compare finds it identical to the image qemu-img bench wrote from the same start;
#   io:    the same check and comparison.
# It also warms the page cache, the JIT's class-data archive and so on.
check_job() {
  local name=$1 want=$WORK/rio-want.qcow2
  log "$name: check round"
  if (( WRITES )); then
    FRESH=""
    cp "$SRC" "$IMG"
    timed run_tool qemu
    cp "$RUNOUT" "$RUNOUT.qemu"
    mv "$IMG" "$want"
    cp "$SRC" "$IMG"
    timed run_tool qcow4j
    qemu-img check "$IMG" >"$CHECK" 2>&1 || { cat "$CHECK" >&2; die "$name: qemu-img check $IMG failed"; }
    qemu-img compare "$want" "$IMG" >"$CHECK" 2>&1 \
      || { cat "$CHECK" >&2; die "$name: qcow4j's image differs from qemu's ($want, $IMG)"; }
    rm -f "$want"
  else
    timed run_tool qemu
    cp "$RUNOUT" "$RUNOUT.qemu"
    timed run_tool qcow4j
  fi
  if [ "$KIND" = bench ]; then
    diff <(sed 's/Run completed in .*/Run completed/' "$RUNOUT.qemu") <(sed 's/Run completed in .*/Run completed/' "$RUNOUT") >&2 \
      || die "$name: ./qcow4j bench printed other lines than qemu-img bench"
  fi
  rm -f "$RUNOUT.qemu"
  log "$name: ok (qcow4j's output$( (( WRITES )) && echo " and image" ) as qemu's)"
}

# Times ROUNDS interleaved rounds of job $1. Sets MEAN_x, MIN_x, and for bench jobs INNER_MEAN_x, for x in
# qemu and qcow4j.
bench_job() {
  local name=$1
  job "$name"
  check_job "$name"
  INNER_qemu=() INNER_qcow4j=()
  if (( WRITES )); then
    if (( FRESH_JOB )); then
      FRESH=$SRC       # prepare copies it before every run
    else
      FRESH=""
      cp "$SRC" "$IMG"  # the runs rewrite one copy: same clusters, same layout every time
    fi
  fi
  interleave_rounds "$name" timed_run run_tool qemu qcow4j
  FRESH=""
  if [ "$KIND" = bench ]; then
    INNER_MEAN_qemu=$(mean_s "${INNER_qemu[@]}")
    INNER_MEAN_qcow4j=$(mean_s "${INNER_qcow4j[@]}")
  else
    INNER_MEAN_qemu=- INNER_MEAN_qcow4j=-
  fi
  rm -f "$IMG"
}

describe_job() {
  job "$1"
  case $KIND in
    bench) printf '%-11s bench %s  (on %s)\n' "$1" "$ARGS" "$( [ "$SRC" = "$EMPTY" ] && echo "a fresh image" || echo "the allocated image")" ;;
    io)    printf '%-11s io: %d random 4 KiB writes from %s  (on %s)\n' "$1" "$(wc -l <"$CMDS")" "${CMDS#"$ROOT"/}" \
             "$( [ "$SRC" = "$EMPTY" ] && echo "a fresh image" || echo "the allocated image")" ;;
  esac
}

main() {
  check_tools qemu-img qemu-io java awk sed diff wc
  local name rows=() skipped=() jobs=()
  for name in $JOBS; do job "$name"; jobs+=("$name"); done
  make_images
  # Build the jar (if sources changed) now, not inside the first timed qcow4j run.
  ./qcow4j --version >/dev/null
  local io_ok=1
  if ! io_works; then
    io_ok=0
    log "./qcow4j io does not work yet ($(head -n 1 "$CHECK")): the io jobs are skipped"
  fi
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

  for name in "${jobs[@]}"; do
    job "$name"
    if [ "$KIND" = io ] && (( ! io_ok )); then
      skipped+=("$name")
      continue
    fi
    bench_job "$name"
    rows+=("$(printf '%-11s %9s %9s %7s   %6s/%-6s   %9s %9s' "$name" "$MEAN_qemu" "$MEAN_qcow4j" \
      "$(awk -v a="$MEAN_qemu" -v b="$MEAN_qcow4j" 'BEGIN { printf "%.2f", a / b }')" "$MIN_qemu" "$MIN_qcow4j" \
      "$INNER_MEAN_qemu" "$INNER_MEAN_qcow4j")")
  done
  bench_startup

  echo
  echo "4 KiB requests at scattered offsets of a 1 GiB qcow2 image (64 KiB clusters), mean wall seconds of $ROUNDS rounds"
  echo "(whole commands, JVM start-up included; tools interleaved, after an untimed check round)"
  echo "ratio = qemu / qcow4j (> 1.00: qcow4j faster); 'Run completed' = bench's own time (mean), which leaves out"
  echo "start-up and opening, and for qemu-img also the final flush (qemu-img flushes when it closes the image)"
  echo
  printf '%-11s %9s %9s %7s   %-13s   %9s %9s\n' job qemu qcow4j ratio "min qemu/ours" "run qemu" "run ours"
  printf '%s\n' "${rows[@]}"
  for name in "${skipped[@]}"; do
    printf '%-11s skipped: ./qcow4j io does not work yet\n' "$name"
  done
  echo
  for name in "${jobs[@]}"; do describe_job "$name"; done
  echo
  echo "./qcow4j --version (JVM start-up): mean $STARTUP_MEAN s, min $STARTUP_MIN s over $VERSION_RUNS runs"
  if (( REBUILDS > 0 )); then
    echo "note: $REBUILDS qcow4j run(s) were repeated because the launcher rebuilt the jar (sources changed)"
  fi
  echo
  machine "qemu:    $(qemu-img --version | head -n 1)"
}

main "$@"
