#!/usr/bin/env bash
# Benchmark: `check --output=json` of large qcow2 images with a lot of metadata, 4 KiB clusters, qemu-img versus
# ./qcow4j, timed in the same run with the tools interleaved. Two images:
#   data  8 GiB virtual, ~75% allocated with data (~1.6 million clusters, ~4,000 L2 tables), part fragmented
#   meta  64 GiB virtual, preallocation=metadata: all 16.8 million clusters allocated, no data written
#         (a sparse file: check reads metadata only, so it works as hard as on a full 64 GiB disk)
#
#   bench/check.sh              # 5 rounds per image
#   ROUNDS=3 bench/check.sh
#
# The images are built once under bench/work/ (check-data.qcow2, ~6 GiB on disk; check-meta.qcow2, 160 MiB
# on disk; about a minute each) and reused; `rm bench/work/check-*.qcow2` rebuilds them.
set -euo pipefail

ROUNDS="${ROUNDS:-5}"
VERSION_RUNS="${VERSION_RUNS:-10}"

# Work from the repo root whatever the caller's directory is.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work"
DATA="$WORK/check-data.qcow2"
META="$WORK/check-meta.qcow2"
IMG=""                          # the image being checked
OUT="$WORK/check-unused"        # lib.sh's prepare removes $OUT: check writes nothing
ERR="$WORK/stderr-check.txt"
RUNOUT="$WORK/check-stdout.txt" # a run's JSON report

MIB=$((1024 * 1024))
DISK_MIB=8192                   # 8 GiB virtual
STRIPE_MIB=4                    # layout: per 4 MiB stripe, its first 2-4 MiB are data, the rest a hole
SEED=4242                       # fixed, so every machine builds the same layout
# Then qemu-img bench writes 60000 4 KiB requests scattered over the whole disk (an odd number of 4 KiB
# blocks per step, so every request lands on another block): those in holes allocate new clusters at the end
# of the file, out of order, which makes the image fragmented as a used disk is.
SCATTER_COUNT=60000
SCATTER_STEP=$((333667 * 4096))

# die, log, check_tools, prepare, timed, interleave_rounds, mean_s, min_s, bench_startup, machine
. "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------------------------------------------------
# Test image
# ---------------------------------------------------------------------------------------------------------

make_data() {
  local raw=$WORK/check-data.raw.tmp tmp=$DATA.tmp src=$WORK/check-src.tmp i n
  log "building $DATA (8 GiB virtual, 4 KiB clusters, ~75% allocated; about a minute)"
  rm -f "$raw" "$tmp" "$src"
  head -c "$((STRIPE_MIB * MIB))" /dev/urandom > "$src"
  truncate -s "$((DISK_MIB * MIB))" "$raw"
  RANDOM=$SEED
  for (( i = 0; i < DISK_MIB / STRIPE_MIB; i++ )); do
    n=$(( 2 + RANDOM % 3 ))
    dd if="$src" of="$raw" bs="$MIB" count="$n" seek="$(( i * STRIPE_MIB ))" conv=notrunc status=none
  done
  rm -f "$src"
  qemu-img convert -f raw -O qcow2 -o cluster_size=4096 "$raw" "$tmp"
  rm -f "$raw"
  qemu-img bench -q -w -c "$SCATTER_COUNT" -d 4 -s 4096 -S "$SCATTER_STEP" --pattern=0x77 "$tmp" >/dev/null
  mv "$tmp" "$DATA"
}

make_meta() {
  log "building $META (64 GiB virtual, 4 KiB clusters, preallocation=metadata; about a minute)"
  rm -f "$META.tmp"
  qemu-img create -q -f qcow2 -o cluster_size=4096,preallocation=metadata "$META.tmp" 64G
  mv "$META.tmp" "$META"
}

# Images are built under a .tmp name and renamed at the end, so an interrupted build is never reused.
make_images() {
  mkdir -p "$WORK"
  [ -f "$DATA" ] || make_data
  [ -f "$META" ] || make_meta
}

# ---------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------

run_tool() {
  case $1 in
    qemu)   qemu-img check --output=json "$IMG" >"$RUNOUT" ;;
    qcow4j) ./qcow4j check --output=json "$IMG" >"$RUNOUT" ;;
  esac
}

# Untimed round, one run per tool, which doubles as the correctness check (the script stops if it fails): both
# exit 0 and print the same JSON. It also brings the metadata into the page cache.
check_round() {
  local name=$1
  cat "$IMG" >/dev/null 2>&1 || true   # sparse for meta: quick
  timed run_tool qemu
  cp "$RUNOUT" "$RUNOUT.qemu"
  timed run_tool qcow4j
  diff "$RUNOUT.qemu" "$RUNOUT" >&2 || die "$name: ./qcow4j check --output=json printed other JSON than qemu-img check"
  log "$name: qcow4j's JSON identical to qemu-img's"
  rm -f "$RUNOUT.qemu"
}

# One line on the image, from the JSON report of the check round ($RUNOUT).
describe_image() {
  local name=$1 allocated
  allocated=$(( $(stat -c %b "$IMG") * $(stat -c %B "$IMG") / MIB ))
  printf '%-5s %s: %d MiB file (%d MiB allocated on disk)' "$name" "${IMG#"$ROOT"/}" "$(( $(stat -c %s "$IMG") / MIB ))" "$allocated"
  if command -v python3 >/dev/null 2>&1; then
    python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
print(", {} of {} clusters allocated, {} fragmented".format(
    c.get("allocated-clusters", 0), c.get("total-clusters", 0), c.get("fragmented-clusters", 0)))' "$RUNOUT"
  else
    echo
  fi
}

main() {
  check_tools qemu-img java awk dd head truncate diff stat
  make_images
  # Build the jar (if sources changed) now, not inside the first timed qcow4j run.
  ./qcow4j --version >/dev/null
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

  local name rows=() descriptions=()
  for name in data meta; do
    if [ "$name" = data ]; then IMG=$DATA; else IMG=$META; fi
    check_round "$name"
    descriptions+=("$(describe_image "$name")")
    interleave_rounds "$name" timed run_tool qemu qcow4j
    rows+=("$(printf '%-6s %9s %9s %7s   %s/%s' "$name" "$MEAN_qemu" "$MEAN_qcow4j" \
      "$(awk -v a="$MEAN_qemu" -v b="$MEAN_qcow4j" 'BEGIN { printf "%.2f", a / b }')" "$MIN_qemu" "$MIN_qcow4j")")
  done
  bench_startup

  echo
  echo "check --output=json of large images with 4 KiB clusters, mean wall seconds of $ROUNDS rounds"
  echo "(whole commands, JVM start-up included; tools interleaved, after an untimed check round)"
  echo "ratio = qemu-img / qcow4j (> 1.00: qcow4j faster)"
  echo
  printf '%-6s %9s %9s %7s   %s\n' image qemu-img qcow4j ratio "min qemu-img/qcow4j"
  printf '%s\n' "${rows[@]}"
  echo
  echo "./qcow4j --version (JVM start-up): mean $STARTUP_MEAN s, min $STARTUP_MIN s over $VERSION_RUNS runs"
  if (( REBUILDS > 0 )); then
    echo "note: $REBUILDS qcow4j run(s) were repeated because the launcher rebuilt the jar (sources changed)"
  fi
  echo
  printf '%s\n' "${descriptions[@]}"
  echo
  machine "qemu:    $(qemu-img --version | head -n 1)"
}

main "$@"
