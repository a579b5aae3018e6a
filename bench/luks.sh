#!/usr/bin/env bash
# Benchmark: LUKS-encrypted qcow2 (aes-256-xts-plain64, QEMU's default cipher), qemu-img versus ./qcow4j, timed
# in the same run with the tools interleaved:
#   read   `convert -O raw` of a 1 GiB encrypted image (~600 MiB of data) into a raw file
#   write  `convert -O qcow2 -o encrypt.format=luks` of the same 1 GiB of data from a raw file into a new
#          encrypted image (iter-time=10, so the key slot's PBKDF2 costs both tools little)
# Both tools decrypt and encrypt with AES-NI where the CPU has it (QEMU through gnutls/nettle, the JDK through its
# AES intrinsics); the secret is passed as QEMU takes it (--object secret,id=sec0,data=...).
#
#   bench/luks.sh              # 3 rounds per job
#   ROUNDS=5 bench/luks.sh
#
# The images are built once under bench/work/ (luks-*.{raw,qcow2}) and reused; `rm bench/work/luks-*` rebuilds them.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
VERSION_RUNS="${VERSION_RUNS:-10}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work"
RAW="$WORK/luks-src.raw"          # 1 GiB raw, ~60% data (text and random), the rest holes
IMG="$WORK/luks-src.qcow2"        # the same data, LUKS-encrypted qcow2
OUT=""                            # set per job: the file a timed run writes (prepare removes it)
ERR="$WORK/stderr-luks.txt"
SECRET=(--object secret,id=sec0,data=bench-passphrase)

MIB=$((1024 * 1024))
CHUNK_MIB=1
DISK_MIB=1024
SEED=4343

# die, log, check_tools, text_chunk, prepare, timed, interleave_rounds, mean_s, min_s, bench_startup, machine
. "$ROOT/bench/lib.sh"

make_images() {
  mkdir -p "$WORK"
  if [ ! -f "$RAW" ]; then
    local tmp=$RAW.tmp i kind
    log "building $RAW (1 GiB, ~60% data)"
    rm -f "$tmp"
    truncate -s "$((DISK_MIB * MIB))" "$tmp"
    RANDOM=$SEED
    for (( i = 0; i < DISK_MIB / CHUNK_MIB; i++ )); do
      kind=$(( RANDOM % 10 ))
      (( kind < 6 )) || continue
      if (( kind < 3 )); then text_chunk "$i"; else head -c "$((CHUNK_MIB * MIB))" /dev/urandom; fi |
        dd of="$tmp" bs="$((CHUNK_MIB * MIB))" seek="$i" conv=notrunc iflag=fullblock status=none
    done
    mv "$tmp" "$RAW"
  fi
  if [ ! -f "$IMG" ]; then
    log "building $IMG"
    rm -f "$IMG.tmp"
    qemu-img convert "${SECRET[@]}" -f raw -O qcow2 -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 \
      "$RAW" "$IMG.tmp"
    mv "$IMG.tmp" "$IMG"
  fi
}

# The image operand with its secret, as qemu-img and qcow4j both take it.
OPTS="driver=qcow2,file.filename=$IMG,encrypt.key-secret=sec0"

run_read() {
  case $1 in
    qemu)   qemu-img convert "${SECRET[@]}" --image-opts -O raw "$OPTS" "$OUT" ;;
    qcow4j) ./qcow4j convert "${SECRET[@]}" --image-opts -O raw "$OPTS" "$OUT" ;;
  esac
}

run_write() {
  local o=encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10
  case $1 in
    qemu)   qemu-img convert "${SECRET[@]}" -f raw -O qcow2 -o "$o" "$RAW" "$OUT" ;;
    qcow4j) ./qcow4j convert "${SECRET[@]}" -f raw -O qcow2 -o "$o" "$RAW" "$OUT" ;;
  esac
}

# Untimed check: both tools' outputs hold the same guest data (the encrypted files differ: salts and keys are random).
check_outputs() {
  OUT=$WORK/luks-out.raw
  run_read qemu && mv "$OUT" "$WORK/luks-ref.raw"
  run_read qcow4j
  cmp -s "$OUT" "$WORK/luks-ref.raw" || die "convert -O raw of the LUKS image differs from qemu-img's"
  rm -f "$WORK/luks-ref.raw" "$OUT"
  OUT=$WORK/luks-out.qcow2
  run_write qcow4j
  qemu-img compare "${SECRET[@]}" --image-opts "driver=raw,file.filename=$RAW" \
    "driver=qcow2,file.filename=$OUT,encrypt.key-secret=sec0" >/dev/null || die "qcow4j's LUKS image reads differently in QEMU"
  rm -f "$OUT"
}

main() {
  check_tools qemu-img java awk
  make_images
  check_outputs
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  bench_startup
  OUT=$WORK/luks-out.raw
  interleave_rounds read timed run_read qemu qcow4j
  local read_q=$MEAN_qemu read_j=$MEAN_qcow4j read_qm=$MIN_qemu read_jm=$MIN_qcow4j
  OUT=$WORK/luks-out.qcow2
  interleave_rounds write timed run_write qemu qcow4j
  rm -f "$OUT"
  echo
  machine "qemu:    $(qemu-img --version | head -n 1)"
  echo "qcow4j --version: mean $STARTUP_MEAN s, min $STARTUP_MIN s (JVM start-up, inside every qcow4j time)"
  echo
  echo "| job (1 GiB, aes-256-xts-plain64) | qemu-img | qcow4j | ratio |"
  echo "|---|---|---|---|"
  awk -v q="$read_q" -v j="$read_j" -v qm="$read_qm" -v jm="$read_jm" \
    'BEGIN { printf "| `convert -O raw` of a LUKS image | %s (%s) | %s (%s) | %.2f |\n", q, qm, j, jm, q / j }'
  awk -v q="$MEAN_qemu" -v j="$MEAN_qcow4j" -v qm="$MIN_qemu" -v jm="$MIN_qcow4j" \
    'BEGIN { printf "| `convert` of raw into a LUKS image | %s (%s) | %s (%s) | %.2f |\n", q, qm, j, jm, q / j }'
  echo "(mean seconds of $ROUNDS rounds, min in brackets; ratio = qemu-img / qcow4j, above 1 means qcow4j is faster)"
}

main "$@"
