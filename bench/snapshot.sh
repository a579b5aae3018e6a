#!/usr/bin/env bash
# Benchmark: internal snapshot create and delete (`snapshot -c` / `snapshot -d`) on a 16 GiB fully allocated qcow2
# image, qemu-img versus ./qcow4j, timed in the same run with the tools interleaved.
#
#   bench/snapshot.sh              # 5 rounds
#   ROUNDS=3 bench/snapshot.sh
#
# The image is built once under bench/work/ (snapshot.qcow2: 16 GiB virtual, 64 KiB clusters,
# preallocation=falloc, so every cluster is allocated and its space reserved; a second to build) and reused;
# `rm bench/work/snapshot.qcow2` rebuilds it. Both tools work on the same image in turn: each round, each tool
# creates a snapshot (every L2 table and all 262,144 data clusters gain a reference, the L2 tables lose their
# COPIED flags) and deletes it again (the references dropped, the flags set again), which leaves the image as it
# was for the next tool.
set -euo pipefail

ROUNDS="${ROUNDS:-5}"
VERSION_RUNS="${VERSION_RUNS:-10}"

# Work from the repo root whatever the caller's directory is.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work"
IMG="$WORK/snapshot.qcow2"
OUT="$WORK/snapshot-unused"     # lib.sh's prepare removes $OUT: the commands write the image in place
ERR="$WORK/stderr-snapshot.txt"
NAME="bench"

# die, log, check_tools, prepare, timed, mean_s, min_s, bench_startup, machine
. "$ROOT/bench/lib.sh"

make_image() {
  mkdir -p "$WORK"
  if [ ! -f "$IMG" ]; then
    log "building $IMG (16 GiB virtual, 64 KiB clusters, preallocation=falloc)"
    rm -f "$IMG.tmp"
    qemu-img create -q -f qcow2 -o preallocation=falloc "$IMG.tmp" 16G
    mv "$IMG.tmp" "$IMG"
  fi
  # A run stopped half way leaves the snapshot behind: start from none.
  if qemu-img snapshot -l "$IMG" | grep -q " $NAME "; then
    qemu-img snapshot -d "$NAME" "$IMG"
  fi
}

# run_tool TOOL OP: qemu-img or qcow4j, create (-c) or delete (-d) the snapshot.
run_tool() {
  case $1 in
    qemu)   qemu-img snapshot "$2" "$NAME" "$IMG" ;;
    qcow4j) ./qcow4j snapshot "$2" "$NAME" "$IMG" ;;
  esac
}

# The image must be clean and say the same to qemu-img after either tool's operation.
verify() {
  local what=$1 out
  out=$(qemu-img check "$IMG" 2>&1) || die "$what: qemu-img check finds the image damaged:"$'\n'"$out"
}

# Untimed round, which doubles as the correctness check (the script stops if it fails): after each tool's create,
# qemu-img check is clean and qemu-img snapshot -l lists the snapshot (id 1) with the same columns but the date;
# after each delete, the check is clean and no snapshot is left. It also brings the metadata into the page cache.
check_round() {
  local tool listed=()
  for tool in qemu qcow4j; do
    timed run_tool "$tool" -c
    verify "$tool snapshot -c"
    listed+=("$(qemu-img snapshot -l "$IMG" | sed -n '3p' | awk '{ print $1, $2, $3, $4, $7, $8 }')")
    timed run_tool "$tool" -d
    verify "$tool snapshot -d"
    [ -z "$(qemu-img snapshot -l "$IMG")" ] || die "$tool snapshot -d left a snapshot behind"
  done
  [ "${listed[0]}" = "${listed[1]}" ] || die "qemu-img snapshot -l differs: '${listed[0]}' after qemu-img, '${listed[1]}' after qcow4j"
  log "check round: both images clean, snapshot -l alike ('${listed[1]}')"
}

main() {
  check_tools qemu-img java awk sed grep
  make_image
  # Build the jar (if sources changed) now, not inside the first timed qcow4j run.
  ./qcow4j --version >/dev/null
  check_round
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

  local -a c_qemu=() c_qcow4j=() d_qemu=() d_qcow4j=()
  local r k tool tools=(qemu qcow4j)
  # Each round, each tool in turn creates then deletes; the order of the tools rotates from round to round.
  for (( r = 1; r <= ROUNDS; r++ )); do
    for (( k = 0; k < 2; k++ )); do
      tool=${tools[$(( (k + r - 1) % 2 ))]}
      timed run_tool "$tool" -c
      eval "c_$tool+=($NS)"
      log "create round $r/$ROUNDS $tool $(awk -v n="$NS" 'BEGIN { printf "%.3f s", n / 1e9 }')"
      timed run_tool "$tool" -d
      eval "d_$tool+=($NS)"
      log "delete round $r/$ROUNDS $tool $(awk -v n="$NS" 'BEGIN { printf "%.3f s", n / 1e9 }')"
    done
  done
  verify "the timed rounds"
  bench_startup

  local op rows=() mq mj nq nj
  for op in c d; do
    eval "mq=\$(mean_s \"\${${op}_qemu[@]}\"); mj=\$(mean_s \"\${${op}_qcow4j[@]}\")"
    eval "nq=\$(min_s \"\${${op}_qemu[@]}\"); nj=\$(min_s \"\${${op}_qcow4j[@]}\")"
    rows+=("$(printf '%-7s %9s %9s %7s   %s/%s' "$([ $op = c ] && echo create || echo delete)" "$mq" "$mj" \
      "$(awk -v a="$mq" -v b="$mj" 'BEGIN { printf "%.2f", a / b }')" "$nq" "$nj")")
  done

  echo
  echo "snapshot -c / -d on a 16 GiB fully allocated image (64 KiB clusters), mean wall seconds of $ROUNDS rounds"
  echo "(whole commands, JVM start-up included; tools interleaved, after an untimed check round)"
  echo "ratio = qemu-img / qcow4j (> 1.00: qcow4j faster)"
  echo
  printf '%-7s %9s %9s %7s   %s\n' op qemu-img qcow4j ratio "min qemu-img/qcow4j"
  printf '%s\n' "${rows[@]}"
  echo
  echo "./qcow4j --version (JVM start-up): mean $STARTUP_MEAN s, min $STARTUP_MIN s over $VERSION_RUNS runs"
  if (( REBUILDS > 0 )); then
    echo "note: $REBUILDS qcow4j run(s) were repeated because the launcher rebuilt the jar (sources changed)"
  fi
  echo
  echo "image: ${IMG#"$ROOT"/}, $(( $(stat -c %s "$IMG") / 1048576 )) MiB file"
  machine "qemu:    $(qemu-img --version | head -n 1)"
}

main "$@"
