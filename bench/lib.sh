# Shared by the benchmarks in bench/ (convert-raw.sh, convert-qcow2.sh, e2image.sh): sourced, not run.
#
# The sourcing script sets, before calling these functions:
#   ROUNDS        timed rounds (check_tools validates it)
#   VERSION_RUNS  runs of `./qcow4j --version` for bench_startup
#   OUT           the output file each timed command writes (prepare removes it)
#   ERR           where timed keeps a command's stderr
#   MIB, CHUNK_MIB  for text_chunk
# and works from the repo root (./qcow4j).

SCRIPT="${0##*/}"

die() { echo "$SCRIPT: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }

# check_tools TOOL...: stops unless every TOOL is on PATH and ROUNDS is a positive integer.
check_tools() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || die "needs '$t' on PATH"
  done
  [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
}

# One chunk of "text": half the time seq numbers (very compressible), half base64 of random bytes
# (compresses to about 3/4), so compression has work to do but is not trivial.
# The generators run in process substitutions: head closes the pipe early and they die of SIGPIPE,
# which would otherwise trip `set -o pipefail`.
text_chunk() {
  local i=$1
  if (( i % 2 )); then
    head -c "$((CHUNK_MIB * MIB))" < <(seq "$((i * 1000003))" 1 inf)
  else
    head -c "$((CHUNK_MIB * MIB))" < <(base64 -w 76 /dev/urandom)
  fi
}

# Untimed: removes the previous output (deleting a file also drops its dirty pages), then syncs so no
# writeback from an earlier run lands in the timed region. The tools leave their output unflushed
# (qemu-img's convert defaults to -t unsafe, and so does qcow4j), so this sync does real work.
prepare() {
  rm -f "$OUT"
  sync
}

# Times one command (wall clock) into the global NS; its stdout is discarded, a failure stops the script.
# ./qcow4j rebuilds its jar whenever any .java file is newer than it, so an edit made elsewhere in the repo
# while this runs would put a Maven build inside the timing. Such a run (it says "qcow4j: building") is
# not counted: it is repeated, now with a fresh jar.
REBUILDS=0
timed() {
  local attempt t0 t1
  for attempt in 1 2 3; do
    prepare
    t0=$(date +%s%N)
    "$@" >/dev/null 2>"$ERR" || { cat "$ERR" >&2; die "failed: $*"; }
    t1=$(date +%s%N)
    if ! grep -q 'qcow4j: building' "$ERR"; then
      cat "$ERR" >&2
      NS=$(( t1 - t0 ))
      return
    fi
    REBUILDS=$(( REBUILDS + 1 ))
    log "qcow4j rebuilt its jar inside a timed run (sources changed meanwhile): run not counted, repeating"
  done
  die "qcow4j keeps rebuilding (sources changing under the benchmark): $*"
}

# Times ROUNDS rounds of LABEL, one run per tool each round. The tools are interleaved and their order rotates
# each round, so a slow phase of the machine or a warm cache does not favour one tool.
#   interleave_rounds LABEL TIMER RUN TOOL...
# TIMER times one command into NS (timed, or a wrapper of it); RUN TOOL runs one tool.
# Sets the globals MEAN_tool and MIN_tool (seconds) for each TOOL.
interleave_rounds() {
  local label=$1 timer=$2 run=$3 r k tool
  shift 3
  local -a tools=("$@")
  local n=${#tools[@]}
  for tool in "${tools[@]}"; do eval "local -a t_$tool=()"; done
  for (( r = 1; r <= ROUNDS; r++ )); do
    for (( k = 0; k < n; k++ )); do
      tool=${tools[$(( (k + r - 1) % n ))]}
      "$timer" "$run" "$tool"
      eval "t_$tool+=($NS)"
      log "$label round $r/$ROUNDS $tool $(awk -v n="$NS" 'BEGIN { printf "%.3f s", n / 1e9 }')"
    done
  done
  for tool in "${tools[@]}"; do
    eval "MEAN_$tool=\$(mean_s \"\${t_$tool[@]}\"); MIN_$tool=\$(min_s \"\${t_$tool[@]}\")"
  done
}

# Mean of nanosecond values, printed in seconds.
mean_s() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.3f", s / NR / 1e9 }'; }
min_s()  { printf '%s\n' "$@" | awk 'NR == 1 || $1 < m { m = $1 } END { printf "%.3f", m / 1e9 }'; }

# JVM start-up plus argument parsing: the fixed cost inside every qcow4j number.
bench_startup() {
  local i
  local -a t=()
  for (( i = 0; i < VERSION_RUNS; i++ )); do
    timed ./qcow4j --version
    t+=("$NS")
  done
  STARTUP_MEAN=$(mean_s "${t[@]}")
  STARTUP_MIN=$(min_s "${t[@]}")
}

# machine [LINE...]: the machine, java, the given lines (the other tools' versions), then the load average:
# LOAD_START, set by the caller when the timings start, and now.
machine() {
  local cpu line
  cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
  echo "machine: $(nproc) cores, ${cpu:-unknown CPU}"
  echo "java:    $(java -version 2>&1 | head -n 1)"
  for line in "$@"; do
    echo "$line"
  done
  # Other work on the machine (builds, tests) shows up as noise in the means; the minimums suffer less.
  echo "load:    $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end (1/5/15 min)"
}
