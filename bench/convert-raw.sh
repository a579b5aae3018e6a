#!/usr/bin/env bash
# Benchmark: `convert -O raw` of 1 GiB qcow2 images (plain, zlib- and zstd-compressed),
# qemu-img versus ./qcow4j, timed in the same run with the tools interleaved.
#
#   bench/convert-raw.sh              # 5 rounds
#   ROUNDS=3 bench/convert-raw.sh
#   GIB=8 IMAGES=plain ROUNDS=3 bench/convert-raw.sh   # the same layout over 8 GiB, the plain image only
#
# Test images are built once under bench/work/ and reused; `rm -rf bench/work` rebuilds them.
set -euo pipefail

ROUNDS="${ROUNDS:-5}"
VERSION_RUNS="${VERSION_RUNS:-10}"

# Work from the repo root whatever the caller's directory is.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work"
OUT="$WORK/out.raw"
REF="$WORK/ref.raw"
ERR="$WORK/stderr.txt"

MIB=$((1024 * 1024))
CHUNK_MIB=1                     # layout granularity: each 1 MiB chunk gets one kind of content
GIB="${GIB:-1}"                 # virtual size in GiB: the seeded layout simply runs on
DISK_MIB=$((GIB * 1024))
IMAGES="${IMAGES:-plain zlib zstd}"
# The 1 GiB images keep their historical names; other sizes get their own, so neither rebuilds the other.
SUFFIX=""; (( GIB == 1 )) || SUFFIX="-${GIB}g"
SEED=4242                       # fixed, so every machine builds the same layout

# die, log, check_tools, text_chunk, prepare, timed, mean_s, min_s, bench_startup, machine
. "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------------------------------------------------
# Test images
# ---------------------------------------------------------------------------------------------------------

# plain.qcow2, 64 KiB clusters. Per 1 MiB chunk, chosen with a seeded $RANDOM:
#   30% random bytes, 30% text        -> ~60% data
#   20% zeros written with `write -z`  (half over unallocated space: plain zero clusters;
#                                       half over data: zero clusters that keep their allocation)
#   20% never written                  -> unallocated
make_plain() {
  local img=$WORK/plain$SUFFIX.qcow2 raw=$WORK/plain$SUFFIX.raw.tmp tmp=$WORK/plain$SUFFIX.qcow2.tmp
  local i kind zero_cmds=()
  log "building $img ($GIB GiB, mixed content)"
  rm -f "$raw" "$tmp"
  truncate -s "$((DISK_MIB * MIB))" "$raw"
  RANDOM=$SEED
  for (( i = 0; i < DISK_MIB / CHUNK_MIB; i++ )); do
    kind=$(( RANDOM % 10 ))
    # Kinds 6 and 7 are zeroed by qemu-io after the conversion; 6 gets data first, so its clusters are
    # allocated and the zeroing keeps the allocation (no unmap), as a guest that zeroed a file would leave.
    if (( kind == 6 || kind == 7 )); then
      zero_cmds+=(-c "write -z $((i * CHUNK_MIB * MIB)) $((CHUNK_MIB * MIB))")
    fi
    (( kind <= 6 )) || continue   # 7, 8, 9: a hole in the raw file
    if (( kind == 3 || kind == 4 || kind == 5 )); then
      text_chunk "$i"
    else
      head -c "$((CHUNK_MIB * MIB))" /dev/urandom
    fi | dd of="$raw" bs="$((CHUNK_MIB * MIB))" seek="$i" conv=notrunc iflag=fullblock status=none
  done
  qemu-img convert -f raw -O qcow2 -o cluster_size=65536 "$raw" "$tmp"
  rm -f "$raw"
  qemu-io -f qcow2 "${zero_cmds[@]}" "$tmp" >/dev/null
  mv "$tmp" "$img"
}

# zlib.qcow2 / zstd.qcow2: every data cluster of plain.qcow2 compressed.
make_compressed() {
  local type=$1 img=$WORK/$1$SUFFIX.qcow2 tmp=$WORK/$1$SUFFIX.qcow2.tmp
  log "building $img"
  rm -f "$tmp"
  qemu-img convert -c -f qcow2 -O qcow2 -o "cluster_size=65536,compression_type=$type" "$WORK/plain$SUFFIX.qcow2" "$tmp"
  mv "$tmp" "$img"
}

# Images are built under a .tmp name and renamed at the end, so an interrupted build is never reused.
make_images() {
  mkdir -p "$WORK"
  local name
  [ -f "$WORK/plain$SUFFIX.qcow2" ] || make_plain
  for name in $IMAGES; do
    [ "$name" = plain ] || [ -f "$WORK/$name$SUFFIX.qcow2" ] || make_compressed "$name"
  done
}

# One line per image: file size and, from `qemu-img map`, how the guest bytes are stored.
describe_images() {
  local img
  for img in $IMAGES; do
    printf '%-6s file %5d MiB' "$img" "$(( $(stat -c %s "$WORK/$img$SUFFIX.qcow2") / MIB ))"
    if command -v python3 >/dev/null 2>&1; then
      qemu-img map -f qcow2 --output=json "$WORK/$img$SUFFIX.qcow2" | python3 -c '
import json, sys
data = zero = hole = 0
for e in json.load(sys.stdin):
    if e["data"]: data += e["length"]
    elif e["zero"] and e["present"]: zero += e["length"]
    else: hole += e["length"]
m = 1 << 20
print(f"  guest: data {data // m} MiB, zero clusters {zero // m} MiB, unallocated {hole // m} MiB")'
    else
      echo
    fi
  done
}

# ---------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------

# The three contenders, by name. Each writes $OUT from image $1.
run_tool() {
  local tool=$1 img=$2
  case $tool in
    qemu)   qemu-img convert -f qcow2 -O raw "$img" "$OUT" ;;
    qemuW)  qemu-img convert -f qcow2 -m 2 -W -O raw "$img" "$OUT" ;;
    qcow4j) ./qcow4j convert -O raw "$img" "$OUT" ;;
  esac
}

# Untimed warm-up round, one run per tool, which doubles as the correctness check: qcow4j's output must
# equal qemu-img's byte for byte. It also keeps first-touch costs out of the timings: reading the image
# into the page cache, and (on a VM) the host backing fresh guest memory for the output's page cache,
# which made every tool's first run several times slower than the next ones.
check_image() {
  local name=$1 img=$WORK/$1$SUFFIX.qcow2
  cat "$img" >/dev/null
  timed run_tool qemu "$img"
  mv "$OUT" "$REF"
  timed run_tool qemuW "$img"
  timed run_tool qcow4j "$img"
  cmp "$REF" "$OUT" >&2 \
    || die "MISMATCH: './qcow4j convert -O raw $img $OUT' differs from 'qemu-img convert -O raw $img $REF'"
  log "$name: qcow4j output identical to qemu-img's"
  rm -f "$REF" "$OUT"
}

# Times ROUNDS interleaved rounds for one image (lib.sh's interleave_rounds).
# Sets the globals MEAN_x and MIN_x (seconds) for x in qemu, qemuW, qcow4j.
bench_image() {
  check_image "$1"
  IMG=$WORK/$1$SUFFIX.qcow2
  interleave_rounds "$1" timed run_on_image qemu qemuW qcow4j
  rm -f "$OUT"
}

# One tool on the image being benchmarked.
run_on_image() { run_tool "$1" "$IMG"; }

main() {
  check_tools qemu-img qemu-io java cmp awk head dd base64 seq truncate
  make_images
  # Build the jar (if sources changed) now, not inside the first timed qcow4j run.
  ./qcow4j --version >/dev/null
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

  local rows=() name
  for name in $IMAGES; do
    bench_image "$name"
    rows+=("$(printf '%-6s %9s %14s %9s %8s   %s/%s/%s' "$name" "$MEAN_qemu" "$MEAN_qemuW" "$MEAN_qcow4j" \
      "$(awk -v a="$MEAN_qemu" -v b="$MEAN_qcow4j" 'BEGIN { printf "%.2f", a / b }')" \
      "$MIN_qemu" "$MIN_qemuW" "$MIN_qcow4j")")
  done
  bench_startup

  echo
  echo "convert -O raw of a $GIB GiB image, mean wall seconds of $ROUNDS rounds (tools interleaved, after an untimed check round)"
  echo "ratio = qemu-img / qcow4j (> 1.00: qcow4j faster)"
  echo
  printf '%-6s %9s %14s %9s %8s   %s\n' image qemu-img "qemu-img -m2 -W" qcow4j ratio "min qemu/-W/qcow4j"
  printf '%s\n' "${rows[@]}"
  echo
  echo "./qcow4j --version (JVM start-up): mean $STARTUP_MEAN s, min $STARTUP_MIN s over $VERSION_RUNS runs"
  if (( REBUILDS > 0 )); then
    echo "note: $REBUILDS qcow4j run(s) were repeated because the launcher rebuilt the jar (sources changed)"
  fi
  echo
  describe_images
  echo
  machine "qemu:    $(qemu-img --version | head -n 1)"
}

main "$@"
