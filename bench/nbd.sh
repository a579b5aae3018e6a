#!/usr/bin/env bash
# Benchmark: serving a qcow2 image over NBD, qemu-nbd 7.2 versus ./qcow4j nbd, in the same run, on the same image,
# the servers' turns alternating each round.
#
#   bench/nbd.sh             # 3 rounds
#   ROUNDS=5 bench/nbd.sh
#   JOBS="read random" bench/nbd.sh   # some of the jobs only
#
# Jobs (each client the same for both servers, over a Unix socket):
#   read    nbdcopy of the 1 GiB mixed image (half plain clusters, half zlib-compressed, some zero and
#           unallocated) to null:, from a read-only export with -e 4 (multi-conn: nbdcopy opens 4 connections)
#   write   nbdcopy of a 1 GiB raw file (~60% data) into a fresh writable qcow2 export (-e 4); afterwards
#           qemu-img check and qemu-img compare against the raw file must pass
#   random  qemu-img bench -f raw: 100000 4 KiB reads at depth 16 over nbd+unix:// (read-only export)
# Each server is started before its timed run and stopped after it (untimed); the first ./qcow4j nbd start
# builds the jar. Output: mean and minimum seconds per job and server, and the ratio qemu-nbd / qcow4j of the
# means (> 1: qcow4j faster).
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
JOBS="${JOBS:-read write random}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work"
SOCK="$WORK/nbd-bench.sock"
MIB=$((1024 * 1024))

die() { echo "nbd.sh: $*" >&2; exit 1; }
for t in qemu-nbd qemu-img qemu-io nbdcopy python3; do
  command -v "$t" >/dev/null 2>&1 || die "needs '$t' on PATH"
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
mkdir -p "$WORK"

SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null || true; rm -f "$SOCK"; }
trap cleanup EXIT

# The 1 GiB source: per 1 MiB, fixed seed, ~30% random bytes, ~30% text-like, ~10% written zeros, ~30% holes.
SRC="$WORK/nbd-src.raw"
MIXED="$WORK/nbd-mixed.qcow2"
if [ ! -f "$SRC" ] || [ ! -f "$MIXED" ]; then
  echo "# building $SRC and $MIXED (once)" >&2
  python3 - "$SRC" <<'PY'
import random, sys
MiB = 1 << 20
rnd = random.Random(4242)
with open(sys.argv[1], 'wb') as f:
    f.truncate(1024 * MiB)
    for i in range(1024):
        r = rnd.random()
        f.seek(i * MiB)
        if r < 0.3:
            f.write(rnd.randbytes(MiB))
        elif r < 0.6:
            line = b'%d %x\n' % (i, i * 2654435761)
            f.write((line * (MiB // len(line) + 1))[:MiB])
        elif r < 0.7:
            f.write(bytes(MiB))
PY
  qemu-img convert -c -f raw -O qcow2 "$SRC" "$MIXED"
  # the first half rewritten as plain clusters: qemu-io writes each MiB that holds data again
  python3 - "$SRC" > "$WORK/nbd-rewrite.txt" <<'PY'
import sys
MiB = 1 << 20
with open(sys.argv[1], 'rb') as f:
    for i in range(512):
        f.seek(i * MiB)
        if any(f.read(MiB)):
            print("write -P %d %d %d" % (i % 251 + 1, i * MiB, MiB))
PY
  qemu-io -f qcow2 "$MIXED" < "$WORK/nbd-rewrite.txt" >/dev/null
fi

start_server() { # who, flags..., image
  local who=$1
  shift
  rm -f "$SOCK"
  if [ "$who" = qemu ]; then
    qemu-nbd -t -k "$SOCK" "$@" >/dev/null 2>&1 &
  else
    "$ROOT/qcow4j" nbd -t -k "$SOCK" "$@" >/dev/null 2>&1 &
  fi
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    [ -S "$SOCK" ] && return
    sleep 0.05
  done
  die "$who: server did not start"
}
stop_server() {
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

NS=0
run_job() { # job who
  local job=$1 who=$2 t0 t1 out
  case $job in
    read)
      start_server "$who" -r -e 4 -f qcow2 "$MIXED"
      t0=$(date +%s%N); nbdcopy "nbd+unix:///?socket=$SOCK" null:; t1=$(date +%s%N)
      stop_server ;;
    write)
      out="$WORK/nbd-out.qcow2"
      rm -f "$out"; qemu-img create -q -f qcow2 "$out" 1G; sync
      start_server "$who" -e 4 -f qcow2 "$out"
      t0=$(date +%s%N); nbdcopy "$SRC" "nbd+unix:///?socket=$SOCK"; t1=$(date +%s%N)
      stop_server
      qemu-img check -q "$out" || die "$who: check of the written image failed"
      qemu-img compare -q -f raw -F qcow2 "$SRC" "$out" || die "$who: written image differs" ;;
    random)
      start_server "$who" -r -f qcow2 "$MIXED"
      t0=$(date +%s%N)
      qemu-img bench -f raw -d 16 -c 100000 -s 4096 -S $((167117 * 4096)) "nbd+unix:///?socket=$SOCK" >/dev/null
      t1=$(date +%s%N)
      stop_server ;;
  esac
  NS=$(( t1 - t0 ))
}

"$ROOT/qcow4j" --version >/dev/null  # builds the jar if needed, outside the timing
printf '%-8s %12s %12s %12s %12s %8s\n' job qemu-nbd-mean qemu-nbd-min qcow4j-mean qcow4j-min ratio
for job in $JOBS; do
  case $job in read|write|random) ;; *) die "unknown job '$job' (read, write, random)" ;; esac
  declare -a tq=() to=()
  for (( r = 0; r < ROUNDS; r++ )); do
    if (( r % 2 )); then order="ours qemu"; else order="qemu ours"; fi
    for who in $order; do
      run_job "$job" "$who"
      if [ "$who" = qemu ]; then tq+=("$NS"); else to+=("$NS"); fi
    done
  done
  python3 - "$job" "${tq[*]}" "${to[*]}" <<'PY'
import sys
job, q, o = sys.argv[1], [int(x) / 1e9 for x in sys.argv[2].split()], [int(x) / 1e9 for x in sys.argv[3].split()]
mq, mo = sum(q) / len(q), sum(o) / len(o)
print("%-8s %12.3f %12.3f %12.3f %12.3f %7.2fx" % (job, mq, min(q), mo, min(o), mq / mo))
PY
done
echo "# $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(qemu-nbd --version | head -1)"
