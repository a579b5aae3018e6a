#!/usr/bin/env bash
# Benchmark: short commands, where JVM start-up is most of the time. `./qcow4j --version`, `info`, `map` and
# `check` of a small image against a JVM that prints one line (the floor every Java command pays), with
# `qemu-img` on the same commands for reference, interleaved in the same run.
#
#   bench/startup.sh               # 20 rounds
#   ROUNDS=40 bench/startup.sh
#   LIMIT=1.3 bench/startup.sh     # exit 2 if any command takes more than LIMIT times the one-line JVM
#
# The one-line JVM runs with the launcher's own flags (serial collector, no perf data), so the ratio measures
# only what qcow4j adds: the launcher script, our class loading and initialisation, and the work itself.
# Goal (issue 16): info, map and check within 1.3x of it. LIMIT (default 1.5) makes this a regression guard:
# the script fails loudly when a command drifts above it. Means suffer from other work on the machine; the
# minimums less so, and the verdict uses them.
set -euo pipefail

ROUNDS="${ROUNDS:-20}"
LIMIT="${LIMIT:-1.5}"

# Work from the repo root whatever the caller's directory is.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work"
IMG="$WORK/startup.qcow2"
OUT="$WORK/startup-unused"      # lib.sh's prepare removes $OUT: these commands write nothing
ERR="$WORK/stderr-startup.txt"

# die, log, check_tools, prepare, timed, interleave_rounds, mean_s, min_s, machine
. "$ROOT/bench/lib.sh"

# lib.sh's prepare syncs before every run, which is right for copies and would dominate runs of 0.1 s here.
prepare() { :; }

setup() {
  mkdir -p "$WORK/hello"
  if [ ! -f "$WORK/hello/Hello.class" ]; then
    printf 'public class Hello { public static void main(String[] a) { System.out.println("hello"); } }\n' \
      > "$WORK/hello/Hello.java"
    javac -d "$WORK/hello" "$WORK/hello/Hello.java"
  fi
  # 1 GiB virtual, a few MiB of data in a handful of runs, a zero cluster, a discard: a map with several lines
  rm -f "$IMG"
  qemu-img create -q -f qcow2 "$IMG" 1G
  qemu-io -c "write -P 1 0 1M" -c "write -P 2 100M 3M" -c "write -z 200M 64k" -c "write -P 3 512M 64k" \
    -c "discard 100M 1M" "$IMG" >/dev/null
  ./qcow4j --version >/dev/null   # build and make the class-data archive outside the timings
  local c
  for c in info map check; do
    diff <(qemu-img "$c" "$IMG") <(./qcow4j "$c" "$IMG") >/dev/null || die "'$c' differs from qemu-img's"
  done
}

CMD=""
run() {
  case $1 in
    jvm) java -XX:+UseSerialGC -XX:-UsePerfData -cp "$WORK/hello" Hello ;;
    qemu) if [ "$CMD" = --version ]; then qemu-img --version; else qemu-img "$CMD" "$IMG"; fi ;;
    q4j) if [ "$CMD" = --version ]; then ./qcow4j --version; else ./qcow4j "$CMD" "$IMG"; fi ;;
  esac
}

check_tools qemu-img qemu-io java javac
setup
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
worst=0
for CMD in --version info map check; do
  interleave_rounds "$CMD" timed run jvm q4j qemu
  ratio=$(awk -v a="$MIN_q4j" -v b="$MIN_jvm" 'BEGIN { printf "%.2f", a / b }')
  rows+=("$(printf '%-10s %8s %8s %8s %8s %8s %8s %6s' "$CMD" "$MEAN_jvm" "$MIN_jvm" "$MEAN_q4j" "$MIN_q4j" \
    "$MEAN_qemu" "$MIN_qemu" "$ratio")")
  worst=$(awk -v a="$ratio" -v b="$worst" 'BEGIN { print (a > b) ? a : b }')
done

echo "startup.sh: $ROUNDS rounds, wall seconds (mean, min), tools interleaved"
echo "ratio = min qcow4j / min one-line JVM (goal <= 1.30; LIMIT $LIMIT)"
printf '%-10s %8s %8s %8s %8s %8s %8s %6s\n' command jvm jvm-min qcow4j q4j-min qemu-img qemu-min ratio
printf '%s\n' "${rows[@]}"
machine "qemu-img: $(qemu-img --version | head -n 1)"
if awk -v w="$worst" -v l="$LIMIT" 'BEGIN { exit !(w > l) }'; then
  echo "startup.sh: FAILED: a command took ${worst}x the one-line JVM, above LIMIT $LIMIT" >&2
  exit 2
fi
