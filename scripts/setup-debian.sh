#!/usr/bin/env bash
# Install what flatcar-infra, its local VM target and its tests need on Debian 12 (as root).
# .ci/run uses this too, so the README's set-up and CI cannot drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "setup-debian.sh: run as root (apt-get, and the VM image build needs root)" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  git ca-certificates systemd \
  ignition openssh-server openssh-client \
  qemu-system-x86 qemu-utils mmdebstrap dosfstools mtools e2fsprogs fdisk gdisk \
  grub-pc-bin grub-common kmod zstd rsync attr
# Debian's own python3 is "externally managed" (PEP 668); this machine's Python is not, and the
# variable is ignored there.
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check -e '.[test]'
