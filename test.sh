#!/usr/bin/env bash
# Installs what the tests need (on a fresh Debian machine too), then runs every test with Maven.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

need=()
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v nbdinfo  >/dev/null 2>&1 || need+=(libnbd-bin)
command -v e2image  >/dev/null 2>&1 || need+=(e2fsprogs)
command -v zstd     >/dev/null 2>&1 || need+=(zstd)
command -v mvn      >/dev/null 2>&1 || need+=(maven)
command -v javac    >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

exec mvn -B verify "$@"
