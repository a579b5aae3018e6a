#!/usr/bin/env bash
# Coverage-guided fuzzing with Jazzer: ./fuzz.sh list | ./fuzz.sh TARGET MINUTES
#   TARGET is a fuzz test class (HeaderFuzzTest) or class#method (OptionsFuzzTest#sizes), as `list` prints them.
# Builds what it needs (mvn), fuzzes that one @FuzzTest for MINUTES with JAZZER_FUZZ=1, then prints the executions
# and the coverage Jazzer (libFuzzer) reports. A finding fails the run and is written by Jazzer beside the target's
# committed inputs (src/test/resources/<package>/<Class>Inputs/<method>/crash-*): rename it and commit it. The
# inputs the campaign generated stay in <module>/.cifuzz-corpus/ (not committed). FUZZ_MVN_ARGS adds Maven options.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

targets() {
  # Every @FuzzTest method, as module Class#method.
  grep -rl --include='*FuzzTest.java' '@FuzzTest' core ext cli | sort | while read -r f; do
    module="${f%%/*}"
    class="$(basename "$f" .java)"
    grep -A1 '@FuzzTest' "$f" | grep -oE 'void [A-Za-z0-9_]+' | sed 's/void //' | while read -r m; do
      echo "$module $class#$m"
    done
  done
}

usage() {
  echo "usage: $0 list | $0 TARGET MINUTES" >&2
  exit 2
}

case "${1:-}" in
  list) targets | awk '{ print $2 " (" $1 ")" }'; exit 0 ;;
  ""|-h|--help) usage ;;
esac
[ $# -eq 2 ] && [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || usage
matches="$(targets | awk -v t="$1" '$2 == t || index($2, t "#") == 1')"
if [ "$(printf '%s\n' "$matches" | grep -c .)" -ne 1 ]; then
  echo "fuzz.sh: '$1' names $(printf '%s\n' "$matches" | grep -c .) targets; one of:" >&2
  targets | awk '{ print "  " $2 }' >&2
  exit 2
fi
module="${matches%% *}"
target="${matches#* }"
seconds=$(( $2 * 60 ))
log="$here/$module/target/fuzz-${target/\#/-}.log"
mkdir -p "$(dirname "$log")"

echo "fuzz.sh: fuzzing $target ($module) for $2 min; log in $log" >&2
# -am builds the modules it depends on (core's test jar included); -Dtest selects the one target there.
# jazzer.internal.arg.* are libFuzzer's arguments (argv[0] first): -max_total_time overrides @FuzzTest's maxDuration.
# FilePathTraversal is off: opening the backing file an image names is what the library does.
set +e
JAZZER_FUZZ=1 mvn -B -pl "$module" -am test ${FUZZ_MVN_ARGS:-} \
  -Dtest="$target" -Dsurefire.failIfNoSpecifiedTests=false -DtrimStackTrace=false \
  -Djazzer.internal.arg.0=fuzz -Djazzer.internal.arg.1=-max_total_time="$seconds" \
  -Djazzer.internal.arg.2=-print_final_stats=1 \
  -Djazzer.disabled_hooks=com.code_intelligence.jazzer.sanitizers.FilePathTraversal \
  >"$log" 2>&1
status=$?
set -e

# libFuzzer's last status line ("#N DONE cov: C ft: F corp: ...") and final stats.
last="$(grep -aE '^#[0-9]+' "$log" | tail -1 || true)"
execs="$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || true)"
echo "target:     $target"
echo "executions: ${execs:-$(sed -E 's/^#([0-9]+).*/\1/' <<<"$last")}"
echo "coverage:   $(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<<"$last" || echo '?') (edges, features)"
echo "corpus:     $(grep -oE 'corp: [^ ]+' <<<"$last" | sed 's/corp: //' || echo '?') (inputs/size)"
if [ $status -ne 0 ]; then
  grep -aE 'FuzzTestFindingException|== Java Exception|crash-|timeout|Tests run:.*Fail|ERROR\]' "$log" | head -20 >&2
  echo "fuzz.sh: $target failed (exit $status): a finding, or a build error; see $log" >&2
  exit 1
fi
