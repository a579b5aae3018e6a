#!/usr/bin/env bash
# Benchmark: `convert -O qcow2` of a 1 GiB raw image (plain, zlib- and zstd-compressed output),
# qemu-img versus ./qcow4j, timed in the same run with the tools interleaved.
#
#   bench/convert-qcow2.sh            # 3 rounds (compressing runs take several seconds each)
#   ROUNDS=5 bench/convert-qcow2.sh
#   GIB=8 JOBS=plain ROUNDS=3 bench/convert-qcow2.sh   # the same layout over 8 GiB, plain output only
#
# The source image is built once under bench/work/ and reused; `rm bench/work/src.raw` rebuilds it.
# Companion of convert-raw.sh (same layout, timing and output conventions); the two share bench/work/
# but no file in it, yet should not run at the same time (each would be noise in the other's timings).
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
VERSION_RUNS="${VERSION_RUNS:-10}"

# Work from the repo root whatever the caller's directory is.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work"
GIB="${GIB:-1}"                 # virtual size in GiB: the seeded layout simply runs on
# The 1 GiB source keeps its historical name; other sizes get their own, so neither rebuilds the other.
SUFFIX=""; (( GIB == 1 )) || SUFFIX="-${GIB}g"
SRC="$WORK/src$SUFFIX.raw"
OUT="$WORK/out.qcow2"
ERR="$WORK/stderr-qcow2.txt"    # not convert-raw.sh's stderr.txt
CHECK="$WORK/check-qcow2.txt"   # output of qemu-img check / compare / info, shown when they fail

MIB=$((1024 * 1024))
CHUNK_MIB=1                     # layout granularity: each 1 MiB chunk gets one kind of content
DISK_MIB=$((GIB * 1024))
SEED=4242                       # fixed, so every machine builds the same layout (as convert-raw.sh)

read -r -a JOBS <<< "${JOBS:-plain zlib zstd}"

# die, log, check_tools, text_chunk, prepare, timed, mean_s, min_s, bench_startup, machine
. "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------------------------------------------------
# Source image
# ---------------------------------------------------------------------------------------------------------

# Kind of chunk i, for i = 0, 1, ... in order, from the same seeded $RANDOM sequence as convert-raw.sh's
# plain.qcow2, so the two benchmarks see the same layout:
#   0-2 random bytes, 3-5 text       -> ~60% data
#   6   zero bytes, written           -> ~10% allocated zeros: the tools must find them by reading
#   7-9 never written                 -> ~30% holes in the (sparse) raw file
# The caller sets RANDOM=$SEED first; called in the current shell (not $(...)) so the sequence advances.
next_kind() { KIND=$(( RANDOM % 10 )); }

# src.raw is built under a .tmp name and renamed at the end, so an interrupted build is never reused.
# Built directly (not from convert-raw.sh's plain.qcow2), so this script works on a fresh checkout alone.
make_source() {
  local tmp=$SRC.tmp i
  mkdir -p "$WORK"
  [ -f "$SRC" ] && return
  log "building $SRC ($GIB GiB raw, mixed content)"
  rm -f "$tmp"
  truncate -s "$((DISK_MIB * MIB))" "$tmp"
  RANDOM=$SEED
  for (( i = 0; i < DISK_MIB / CHUNK_MIB; i++ )); do
    next_kind
    (( KIND <= 6 )) || continue   # 7, 8, 9: a hole
    case $KIND in
      0|1|2) head -c "$((CHUNK_MIB * MIB))" /dev/urandom ;;
      3|4|5) text_chunk "$i" ;;
      6)     head -c "$((CHUNK_MIB * MIB))" /dev/zero ;;
    esac | dd of="$tmp" bs="$((CHUNK_MIB * MIB))" seek="$i" conv=notrunc iflag=fullblock status=none
  done
  mv "$tmp" "$SRC"
}

# One line: the source's layout (recomputed from the seed) and how much of the file is allocated.
describe_source() {
  local i n_random=0 n_text=0 n_zero=0 n_hole=0
  RANDOM=$SEED
  for (( i = 0; i < DISK_MIB / CHUNK_MIB; i++ )); do
    next_kind
    case $KIND in
      0|1|2) n_random=$(( n_random + 1 )) ;;
      3|4|5) n_text=$(( n_text + 1 )) ;;
      6)     n_zero=$(( n_zero + 1 )) ;;
      *)     n_hole=$(( n_hole + 1 )) ;;
    esac
  done
  echo "${SRC##*/}: $(( $(stat -c %s "$SRC") / MIB )) MiB, $(( $(stat -c '%b * %B' "$SRC") / MIB )) MiB allocated;" \
    "random $(( n_random * CHUNK_MIB )) MiB, text $(( n_text * CHUNK_MIB )) MiB," \
    "zero bytes $(( n_zero * CHUNK_MIB )) MiB, holes $(( n_hole * CHUNK_MIB )) MiB"
}

# ---------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------

# The contenders of each job, by name: ref is the qemu-img command qcow4j is measured against (ratio),
# alt a second qemu-img reference, qcow4j ours. Each writes $OUT from $SRC.
#   plain: ref is qemu-img's default; alt adds -m 2 -W (parallel, out-of-order writes) as convert-raw.sh.
#   zlib/zstd: qemu-img compresses in parallel only with -W (in-order writes serialise the compression),
#   and qcow4j uses all cores (2 here) by default, so the fair reference is -m 2 -W; alt is the default.
# qemu-img gets -f raw (no probing); qcow4j probes, as convert-raw.sh leaves it to.
run_tool() {
  local job=$1 tool=$2 c=() o=()
  case $job in
    plain) ;;
    zlib)  c=(-c) ;;
    zstd)  c=(-c); o=(-o compression_type=zstd) ;;
  esac
  case $tool in
    ref)
      if [ "$job" = plain ]; then
        qemu-img convert -f raw -O qcow2 "$SRC" "$OUT"
      else
        qemu-img convert "${c[@]}" -m 2 -W -f raw -O qcow2 "${o[@]}" "$SRC" "$OUT"
      fi ;;
    alt)
      if [ "$job" = plain ]; then
        qemu-img convert -m 2 -W -f raw -O qcow2 "$SRC" "$OUT"
      else
        qemu-img convert "${c[@]}" -f raw -O qcow2 "${o[@]}" "$SRC" "$OUT"
      fi ;;
    qcow4j) ./qcow4j convert "${c[@]}" -O qcow2 "${o[@]}" "$SRC" "$OUT" ;;
  esac
}

# The commands of run_tool, as text for the legend and for error messages.
describe_tool() {
  local job=$1 tool=$2 c="" o=""
  case $job in
    zlib) c="-c " ;;
    zstd) c="-c "; o="-o compression_type=zstd " ;;
  esac
  case $tool in
    ref)    [ "$job" = plain ] && echo "qemu-img convert -O qcow2" || echo "qemu-img convert ${c}-m 2 -W -O qcow2 $o" ;;
    alt)    [ "$job" = plain ] && echo "qemu-img convert -m 2 -W -O qcow2" || echo "qemu-img convert ${c}-O qcow2 $o" ;;
    qcow4j) echo "./qcow4j convert ${c}-O qcow2 $o" ;;
  esac | sed 's/ *$//'
}

# Checks $OUT, just written by `tool` for `job`, and records its size in SIZE_<tool>. Stops loudly on:
#   - qemu-img check reporting anything but "No errors" (corruptions, leaks: exit 2 / 3);
#   - qemu-img compare finding a difference with the source (exit 1) or failing (exit 2);
#   - a compression type in the header other than the one asked for: with -o compression_type=zstd
#     ignored, compare would still pass (the data is the same), only the header tells.
# The output differs from qemu-img's byte for byte (cluster order, compressed sizes), so unlike
# convert-raw.sh this is a check of the image's consistency and content, not a cmp of the two outputs.
check_output() {
  local job=$1 tool=$2 cmd want=zlib
  cmd="$(describe_tool "$job" "$tool") $SRC $OUT"
  [ "$job" = zstd ] && want=zstd
  if ! qemu-img check -f qcow2 "$OUT" >"$CHECK" 2>&1 || ! grep -q '^No errors were found' "$CHECK"; then
    cat "$CHECK" >&2
    die "CHECK FAILED: 'qemu-img check -f qcow2 $OUT' after '$cmd'"
  fi
  if ! qemu-img compare -f raw -F qcow2 "$SRC" "$OUT" >"$CHECK" 2>&1; then
    cat "$CHECK" >&2
    die "MISMATCH: 'qemu-img compare -f raw -F qcow2 $SRC $OUT' after '$cmd'"
  fi
  qemu-img info -f qcow2 "$OUT" >"$CHECK" 2>&1 || { cat "$CHECK" >&2; die "'qemu-img info $OUT' failed after '$cmd'"; }
  if ! grep -q "compression type: $want\$" "$CHECK"; then
    cat "$CHECK" >&2
    die "WRONG HEADER: compression type is not $want after '$cmd'"
  fi
  printf -v "SIZE_$tool" '%s' "$(stat -c %s "$OUT")"
  log "$job: $tool output checked (no errors or leaks, identical to src.raw), $(( SIZE_$tool / 1024 )) KiB"
}

# Untimed warm-up round, one run per tool, which doubles as the correctness check (check_output) and
# records the output sizes. It also keeps first-touch costs out of the timings: reading the source into
# the page cache, and (on a VM) the host backing fresh guest memory for the output's page cache.
check_job() {
  local job=$1 tool
  cat "$SRC" >/dev/null
  for tool in ref alt qcow4j; do
    timed run_tool "$job" "$tool"
    check_output "$job" "$tool"
  done
  rm -f "$OUT"
}

# Times ROUNDS interleaved rounds for one job (lib.sh's interleave_rounds).
# Sets the globals MEAN_x and MIN_x (seconds) for x in ref, alt, qcow4j.
bench_job() {
  check_job "$1"
  JOB=$1
  interleave_rounds "$1" timed run_job_tool ref alt qcow4j
  rm -f "$OUT"
}

# One tool on the job being benchmarked.
run_job_tool() { run_tool "$JOB" "$1"; }

main() {
  check_tools qemu-img java cmp awk head dd base64 seq truncate stat grep
  make_source
  # Build the jar (if sources changed) now, not inside the first timed qcow4j run.
  ./qcow4j --version >/dev/null
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

  local rows=() job
  for job in "${JOBS[@]}"; do
    bench_job "$job"
    rows+=("$(printf '%-6s %9s %9s %9s %6s   %-20s   %8.1f %7.1f %6.3f' "$job" \
      "$MEAN_ref" "$MEAN_alt" "$MEAN_qcow4j" \
      "$(awk -v a="$MEAN_ref" -v b="$MEAN_qcow4j" 'BEGIN { printf "%.2f", a / b }')" \
      "$MIN_ref/$MIN_alt/$MIN_qcow4j" \
      "$(awk -v s="$SIZE_ref" -v m="$MIB" 'BEGIN { print s / m }')" \
      "$(awk -v s="$SIZE_qcow4j" -v m="$MIB" 'BEGIN { print s / m }')" \
      "$(awk -v a="$SIZE_qcow4j" -v b="$SIZE_ref" 'BEGIN { print a / b }')")")
  done
  bench_startup

  echo
  echo "convert -O qcow2 of a $GIB GiB raw image, mean wall seconds of $ROUNDS rounds (tools interleaved, after an untimed check round)"
  echo "ratio = qemu-img / qcow4j (> 1.00: qcow4j faster); size = output file, qcow4j / qemu-img (goal: within 2%)"
  echo
  # The columns' commands differ per job (see run_tool for why), so spell them out.
  for job in "${JOBS[@]}"; do
    printf '%-6s %-9s %s\n' "$job" qemu-img: "$(describe_tool "$job" ref)" "" "2nd ref:" "$(describe_tool "$job" alt)" \
      "" qcow4j: "$(describe_tool "$job" qcow4j)"
  done
  echo
  printf '%-6s %9s %9s %9s %6s   %-20s   %8s %7s %6s\n' \
    job qemu-img "2nd ref" qcow4j ratio "min qemu/2nd/qcow4j" "MiB qemu" qcow4j size
  printf '%s\n' "${rows[@]}"
  echo
  echo "./qcow4j --version (JVM start-up): mean $STARTUP_MEAN s, min $STARTUP_MIN s over $VERSION_RUNS runs"
  if (( REBUILDS > 0 )); then
    echo "note: $REBUILDS qcow4j run(s) were repeated because the launcher rebuilt the jar (sources changed);"
    echo "      the timed jar may then differ from the one the check round verified"
  fi
  echo
  describe_source
  echo
  machine "qemu:    $(qemu-img --version | head -n 1)"
}

main "$@"
