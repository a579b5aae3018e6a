#!/usr/bin/env bash
# Benchmark: imaging the metadata of a 4 GiB ext4 filesystem holding ~100,000 small files,
# e2fsprogs' e2image versus `./qcow4j e2image`, timed in the same run with the tools interleaved:
#   -Q (qcow2 image), -r (sparse raw image), and qcow4j's -Q --compress zstd (e2image cannot compress).
#
#   bench/e2image.sh              # 3 rounds
#   ROUNDS=5 bench/e2image.sh
#   SCALE=1m ROUNDS=3 bench/e2image.sh   # a 64 GiB ext4 with 1,000,000 files of the same mix (fs1m.img; ~10 GB of
#                                        # disk while it is built, ~6 GB kept)
#
# The filesystem image is built once under bench/work/ and reused; `rm bench/work/fs100k.img` rebuilds it.
# Companion of convert-raw.sh and convert-qcow2.sh (same timing and output conventions, bench/lib.sh);
# it shares bench/work/ but no file in it with them, yet should not run at the same time as they do.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
VERSION_RUNS="${VERSION_RUNS:-10}"

# Work from the repo root whatever the caller's directory is.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work"
TREE="$WORK/tree"               # the files mke2fs -d copies in; removed once the image is built
OUT_QCOW2="$WORK/out.qcow2"     # what the -Q commands write
OUT_RAW="$WORK/out.raw"         # what the -r commands write
OUT="$OUT_QCOW2"                # the current job's output, which prepare (lib.sh) removes before each run
ERR="$WORK/stderr-e2image.txt"  # not the other scripts' stderr files
CHECK="$WORK/check-e2image.txt" # output of qemu-img check / compare / info, shown when they fail
# Kept from the check round, then removed:
E2_QCOW2="$WORK/e2image.qcow2"  # e2image -Q fs100k.img
Q_QCOW2="$WORK/qcow4j.qcow2"    # ./qcow4j e2image -Q fs100k.img
E2_RAW="$WORK/e2image.raw"      # e2image -r fs100k.img: the reference for every comparison
BACK_RAW="$WORK/back.raw"       # e2image -r of qcow4j's -Q output

MIB=$((1024 * 1024))
SCALE="${SCALE:-100k}"
case $SCALE in
  100k) FS_SIZE=4G;  TOP=20; SUB=20; FILES=250 ;;
  1m)   FS_SIZE=64G; TOP=40; SUB=50; FILES=500 ;;
  *)    echo "e2image.sh: SCALE is 100k or 1m, not '$SCALE'" >&2; exit 1 ;;
esac
FS="$WORK/fs$SCALE.img"
# The tree: TOP top-level directories of SUB subdirectories of FILES files each, so TOP * SUB * FILES files
# in TOP * (SUB + 1) directories; plus a few slow (> 60 byte) symlinks and sparse files with many extents,
# whose blocks (symlink targets, extent tree leaves) are metadata too.
SYMLINKS=200
SPARSE_FILES=20
SEED=4242                       # fixed, so every machine builds the same tree
UUID=6b8f1c2e-4242-4242-8242-424242424242       # and the same UUID and directory hash seed
HASH_SEED=0f5e2d1c-4242-4242-8242-424242424242

JOBS=(Q r zstd)

# die, log, check_tools, prepare, timed, mean_s, min_s, bench_startup, machine
. "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------------------------------------------------
# Filesystem image
# ---------------------------------------------------------------------------------------------------------

# The tree, from a seeded generator (python3: a bash loop takes minutes for 100,000 files). File sizes:
# 30% 0-511 bytes, 55% 512 bytes-4 KiB, 15% 4-32 KiB (~0.5 GB of data in all), random bytes; names of
# 12-40 characters, so each directory of 250 files takes several blocks and gets an htree index.
make_tree() {
  rm -rf "$TREE"
  python3 - "$TREE" "$TOP" "$SUB" "$FILES" "$SYMLINKS" "$SPARSE_FILES" "$SEED" <<'EOF'
import os, random, string, sys
root, top, sub, files, symlinks, sparse, seed = sys.argv[1], *map(int, sys.argv[2:])
rnd = random.Random(seed)
alphabet = string.ascii_lowercase + string.digits + "_-."
def name(i):
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(8, 36))) + f"{i:04d}"
def size():
    r = rnd.random()
    if r < 0.30: return rnd.randint(0, 511)
    if r < 0.85: return rnd.randint(512, 4096)
    return rnd.randint(4097, 32768)
dirs = []
for t in range(top):
    for s in range(sub):
        d = os.path.join(root, f"top{t:02d}", f"sub{s:02d}")
        os.makedirs(d)
        dirs.append(d)
        for f in range(files):
            with open(os.path.join(d, name(f)), "wb") as fh:
                fh.write(rnd.randbytes(size()))
links = os.path.join(root, "links")
os.makedirs(links)
for i in range(symlinks):
    target = os.path.join(rnd.choice(dirs), "x" * rnd.randint(70, 200))   # > 60 bytes: stored in a block
    os.symlink(target, os.path.join(links, f"link{i:04d}"))
holes = os.path.join(root, "sparse")
os.makedirs(holes)
for i in range(sparse):
    with open(os.path.join(holes, f"sparse{i:02d}"), "wb") as fh:
        for k in range(rnd.randint(300, 1500)):   # one 4 KiB block every 8 KiB: one extent each
            fh.seek(k * 8192)
            fh.write(rnd.randbytes(4096))
EOF
}

# fs100k.img is built under a .tmp name and renamed at the end, so an interrupted build is never reused.
make_fs() {
  local tmp=$FS.tmp
  mkdir -p "$WORK"
  [ -f "$FS" ] && return
  log "building $FS ($FS_SIZE ext4, $(( TOP * SUB * FILES )) files in $(( TOP * (SUB + 1) )) directories)"
  make_tree
  rm -f "$tmp"
  mke2fs -q -F -t ext4 -U "$UUID" -E "hash_seed=$HASH_SEED" -d "$TREE" "$tmp" "$FS_SIZE" >&2
  rm -rf "$TREE"
  # mke2fs -d links entries one after the other, leaving linear directories; e2fsck -D indexes them (htree)
  # as the kernel would have. Exit 1: "errors corrected", the directories optimised.
  local rc=0
  e2fsck -f -y -D "$tmp" >"$CHECK" 2>&1 || rc=$?
  (( rc <= 1 )) || { cat "$CHECK" >&2; die "e2fsck -f -y -D $tmp: exit $rc"; }
  mv "$tmp" "$FS"
}

# One line: the filesystem's geometry and use (from dumpe2fs) and how much of the image file is allocated.
describe_fs() {
  dumpe2fs -h "$FS" 2>/dev/null | awk -F': *' -v file="${FS##*/}" -v alloc="$(( $(stat -c '%b * %B' "$FS") / MIB ))" \
    -v size="$(( $(stat -c %s "$FS") / MIB ))" '
    { v[$1] = $2 }
    END {
      printf "%s: %d MiB, %d MiB allocated; ext4, %d-byte blocks, %d of %d blocks used, %d of %d inodes used\n",
        file, size, alloc, v["Block size"], v["Block count"] - v["Free blocks"], v["Block count"],
        v["Inode count"] - v["Free inodes"], v["Inode count"]
    }'
}

# ---------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------

# The contenders of each job, by name: e2image (the ratio's reference) and qcow4j. Each writes $OUT from $FS.
# The zstd job has no e2image command. e2image works in one thread, qcow4j uses all cores by default.
run_tool() {
  local job=$1 tool=$2
  case $job/$tool in
    Q/e2image)     e2image -Q "$FS" "$OUT" ;;
    Q/qcow4j)      ./qcow4j e2image -Q "$FS" "$OUT" ;;
    r/e2image)     e2image -r "$FS" "$OUT" ;;
    r/qcow4j)      ./qcow4j e2image -r "$FS" "$OUT" ;;
    zstd/qcow4j)   ./qcow4j e2image -Q --compress zstd "$FS" "$OUT" ;;
    *)             die "no command for job $job, tool $tool" ;;
  esac
}

# The commands of run_tool, as text for the legend and for error messages.
describe_tool() {
  local job=$1 tool=$2 t=e2image
  [ "$tool" = qcow4j ] && t="./qcow4j e2image"
  case $job in
    Q)    echo "$t -Q" ;;
    r)    echo "$t -r" ;;
    zstd) echo "$t -Q --compress zstd" ;;
  esac
}

# The output file of a job.
set_out() {
  case $1 in
    r) OUT=$OUT_RAW ;;
    *) OUT=$OUT_QCOW2 ;;
  esac
}

tools_of() {
  case $1 in
    zstd) echo qcow4j ;;
    *)    echo e2image qcow4j ;;
  esac
}

# Runs `cmd...` into $CHECK; stops, showing its output, if it fails or its output lacks the line `want`.
expect() {
  local want=$1 what=$2
  shift 2
  if ! "$@" >"$CHECK" 2>&1 || ! grep -q "$want" "$CHECK"; then
    cat "$CHECK" >&2
    die "$what: '$*'"
  fi
}

# The jar and the launcher's class-data archive, as a stamp that changes whenever either is rewritten.
jar_stamp() {
  stat -c %y "$ROOT/cli/target/qcow4j.jar" "$ROOT/cli/target/qcow4j.jsa" 2>/dev/null | tr '\n' ' ' || true
}

# timed (lib.sh), also guarding against a build outside this script (the launcher of another ./qcow4j, or
# mvn package, run while this benchmark is) rewriting the jar: timed only sees the builds of the command it
# times. After such a rewrite, the next ./qcow4j remakes its class-data archive (no "qcow4j: building"
# message) and runs without it. So: if the jar or archive changed since the last run, an untimed
# `./qcow4j --version` first brings both up to date; a run during which either changed (with no rebuild of
# its own, which timed already repeats) is not counted and is repeated.
OUTSIDE=0
JAR_SEEN=
timed_run() {
  local attempt before rebuilds
  for attempt in 1 2 3; do
    if [ "$(jar_stamp)" != "$JAR_SEEN" ]; then
      ./qcow4j --version >/dev/null 2>"$ERR" || { cat "$ERR" >&2; die "failed: ./qcow4j --version"; }
      JAR_SEEN=$(jar_stamp)
    fi
    before=$JAR_SEEN rebuilds=$REBUILDS
    timed "$@"
    JAR_SEEN=$(jar_stamp)
    if [ "$JAR_SEEN" = "$before" ] || (( REBUILDS > rebuilds )); then
      return
    fi
    OUTSIDE=$(( OUTSIDE + 1 ))
    log "the jar was rewritten during the run by a build outside this script: run not counted, repeating"
  done
  die "the jar keeps being rewritten (builds running beside the benchmark): $*"
}

# Untimed warm-up round, one run per command, which doubles as the correctness check; stops loudly unless:
#   - qemu-img check finds no errors and no leaks in qcow4j's -Q output (and its zstd one);
#   - e2image -r of qcow4j's -Q output is byte-identical (cmp) to `e2image -r fs100k.img`: the real e2image
#     reads qcow4j's image back to the same raw image as from the filesystem itself;
#   - qcow4j's -r output is byte-identical to e2image's;
#   - qemu-img compare finds the zstd image identical to the plain one, whose header says zstd.
# e2image's own -Q output is only reported on (e2image 1.47 leaves a leaked cluster: qemu-img check exit 3).
# It also reads the filesystem into the page cache, keeps first-touch costs of the outputs' page cache out
# of the timings, and records the output sizes.
check_round() {
  local rc
  log "check round (untimed): reading ${FS##*/} into the page cache"
  cat "$FS" >/dev/null

  set_out Q
  timed_run run_tool Q e2image
  mv "$OUT" "$E2_QCOW2"
  SIZE_e2Q=$(stat -c %s "$E2_QCOW2")
  rc=0; qemu-img check -f qcow2 "$E2_QCOW2" >"$CHECK" 2>&1 || rc=$?
  E2_CHECK="exit $rc: $(grep -E 'No errors|leaked|error' "$CHECK" | head -n 2 | tr '\n' ' ' | sed 's/ *$//' || true)"
  log "e2image -Q output: qemu-img check $E2_CHECK"

  timed_run run_tool Q qcow4j
  mv "$OUT" "$Q_QCOW2"
  SIZE_qQ=$(stat -c %s "$Q_QCOW2")
  expect '^No errors were found' "CHECK FAILED after './qcow4j e2image -Q $FS $Q_QCOW2'" \
    qemu-img check -f qcow2 "$Q_QCOW2"
  log "qcow4j -Q output: qemu-img check finds no errors or leaks"

  set_out r
  timed_run run_tool r e2image
  mv "$OUT" "$E2_RAW"
  rm -f "$BACK_RAW"
  e2image -r "$Q_QCOW2" "$BACK_RAW" 2>"$CHECK" || { cat "$CHECK" >&2; die "FAILED: 'e2image -r $Q_QCOW2 $BACK_RAW'"; }
  cmp "$E2_RAW" "$BACK_RAW" >&2 \
    || die "MISMATCH: 'e2image -r $Q_QCOW2 $BACK_RAW' (qcow4j's -Q output) differs from 'e2image -r $FS $E2_RAW'"
  rm -f "$BACK_RAW"
  log "e2image -r of qcow4j's -Q output identical to e2image -r of the filesystem"

  timed_run run_tool r qcow4j
  cmp "$E2_RAW" "$OUT" >&2 \
    || die "MISMATCH: './qcow4j e2image -r $FS $OUT' differs from 'e2image -r $FS $E2_RAW'"
  ALLOC_e2r=$(( $(stat -c '%b * %B' "$E2_RAW") ))
  ALLOC_qr=$(( $(stat -c '%b * %B' "$OUT") ))
  SIZE_raw=$(stat -c %s "$OUT")
  rm -f "$OUT" "$E2_RAW"
  log "qcow4j -r output identical to e2image's"

  set_out zstd
  timed_run run_tool zstd qcow4j
  SIZE_zstd=$(stat -c %s "$OUT")
  expect '^No errors were found' "CHECK FAILED after './qcow4j e2image -Q --compress zstd $FS $OUT'" \
    qemu-img check -f qcow2 "$OUT"
  expect 'compression type: zstd$' "WRONG HEADER: compression type is not zstd after './qcow4j e2image -Q --compress zstd $FS $OUT'" \
    qemu-img info -f qcow2 "$OUT"
  expect '^Images are identical' "MISMATCH: the zstd image differs from the plain one" \
    qemu-img compare -f qcow2 -F qcow2 "$Q_QCOW2" "$OUT"
  rm -f "$OUT"
  log "qcow4j -Q --compress zstd output: no errors or leaks, identical to the plain one"

  # Not a requirement: does qcow4j write e2image's very bytes?
  if cmp -s "$E2_QCOW2" "$Q_QCOW2"; then SAME_QCOW2=yes; else SAME_QCOW2=no; fi
  rm -f "$E2_QCOW2" "$Q_QCOW2"
}

# Times ROUNDS interleaved rounds for one job (lib.sh's interleave_rounds; with two tools their order
# alternates). Sets the globals MEAN_x and MIN_x (seconds, "-" for none) for x in e2image, qcow4j.
bench_job() {
  local tools
  read -r -a tools <<<"$(tools_of "$1")"
  set_out "$1"
  JOB=$1
  MEAN_e2image=-; MIN_e2image=-
  interleave_rounds "$1" timed_run run_job_tool "${tools[@]}"
  rm -f "$OUT"
}

# One tool on the job being benchmarked.
run_job_tool() { run_tool "$JOB" "$1"; }

mib() { awk -v s="$1" -v m="$MIB" 'BEGIN { printf "%.1f", s / m }'; }

main() {
  check_tools e2image mke2fs e2fsck dumpe2fs python3 qemu-img java cmp awk stat grep
  make_fs
  # Build the jar (if sources changed) now, not inside the first timed qcow4j run.
  ./qcow4j --version >/dev/null
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  local rows=() job ratio

  check_round
  for job in "${JOBS[@]}"; do
    bench_job "$job"
    ratio=-
    [ "$MEAN_e2image" = - ] || ratio=$(awk -v a="$MEAN_e2image" -v b="$MEAN_qcow4j" 'BEGIN { printf "%.2f", a / b }')
    rows+=("$(printf '%-20s %9s %9s %6s   %s/%s' "$(describe_tool "$job" qcow4j | sed 's/^.* e2image //')" \
      "$MEAN_e2image" "$MEAN_qcow4j" "$ratio" "$MIN_e2image" "$MIN_qcow4j")")
  done
  bench_startup

  echo
  echo "e2image of a $FS_SIZE ext4 image with $(( TOP * SUB * FILES )) small files, mean wall seconds of $ROUNDS rounds" \
    "(tools interleaved, after an untimed check round)"
  echo "ratio = e2image / qcow4j (> 1.00: qcow4j faster); e2image runs in one thread, qcow4j on all $(nproc) cores"
  echo
  printf '%-20s %9s %9s %6s   %s\n' job e2image qcow4j ratio "min e2image/qcow4j"
  printf '%s\n' "${rows[@]}"
  echo
  echo "output sizes (from the check round):"
  printf '  %-34s %10s MiB  (%d bytes)\n' "e2image -Q" "$(mib "$SIZE_e2Q")" "$SIZE_e2Q" \
    "./qcow4j e2image -Q" "$(mib "$SIZE_qQ")" "$SIZE_qQ" \
    "./qcow4j e2image -Q --compress zstd" "$(mib "$SIZE_zstd")" "$SIZE_zstd"
  echo "  qcow4j -Q / e2image -Q: $(awk -v a="$SIZE_qQ" -v b="$SIZE_e2Q" 'BEGIN { printf "%.3f", a / b }')," \
    "byte-identical: $SAME_QCOW2; qcow4j plain / zstd: $(awk -v a="$SIZE_qQ" -v b="$SIZE_zstd" 'BEGIN { printf "%.2f", a / b }')"
  echo "  -r: $(mib "$SIZE_raw") MiB sparse files, allocated $(mib "$ALLOC_e2r") MiB (e2image), $(mib "$ALLOC_qr") MiB (qcow4j)"
  echo "  qemu-img check of e2image's own -Q output: $E2_CHECK"
  echo
  echo "./qcow4j --version (JVM start-up): mean $STARTUP_MEAN s, min $STARTUP_MIN s over $VERSION_RUNS runs"
  if (( REBUILDS > 0 )); then
    echo "note: $REBUILDS qcow4j run(s) were repeated because the launcher rebuilt the jar (sources changed);"
    echo "      the timed jar may then differ from the one the check round verified"
  fi
  if (( OUTSIDE > 0 )); then
    echo "note: $OUTSIDE run(s) were repeated because a build outside this script rewrote the jar meanwhile;"
    echo "      the timed jar may then differ from the one the check round verified"
  fi
  echo
  describe_fs
  echo
  machine "qemu:    $(qemu-img --version | head -n 1)" \
    "e2fsprogs: $({ e2image 2>&1 || true; } | head -n 1)"
}

main "$@"
