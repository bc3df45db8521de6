#!/usr/bin/env bash
# Boots the SD card image under emulation and checks the box comes up: qemu-system-
# aarch64 (`-M virt`, the image's own kernel and initrd, the whole image as its
# disk) until systemd reports uplink.service started (Type=notify: ready means the
# DICOM listener accepts) and the agent answers a C-ECHO from this machine through
# a loopback port forward. Prints the boot time.
#
#     board/smoke-boot.sh [IMAGE_DIR]     (default: target/image, from build-image.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath "${1:-target/image}")
timeout_secs=${SMOKE_TIMEOUT:-600}

# qemu-system-arm in bookworm conflicts with this machine's newer qemu-utils; the
# backports build does not.
if ! command -v qemu-system-aarch64 >/dev/null; then
  if ! apt-cache policy | grep -q bookworm-backports; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" \
      > /etc/apt/sources.list.d/bookworm-backports.list
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -t bookworm-backports qemu-system-arm
fi
command -v echoscu >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q dcmtk

work=$(mktemp -d)
trap 'kill "$qemu" 2>/dev/null || true; rm -rf "$work"' EXIT
# A copy: the boot changes the card (provisioning rewrites uplink.toml).
cp --sparse=always "$dir/uplink.img" "$work/uplink.img"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

started=$(date +%s)
qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -nographic \
  -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" \
  -append "root=LABEL=RASPIROOT rw console=ttyAMA0 systemd.show_status=1" \
  -drive file="$work/uplink.img",if=none,format=raw,id=card \
  -device virtio-blk-pci,drive=card \
  -netdev user,id=net,hostfwd=tcp:127.0.0.1:"$port"-:11112 \
  -device virtio-net-pci,netdev=net \
  >"$work/console.log" 2>&1 </dev/null &
qemu=$!

ready=""
while (($(date +%s) - started < timeout_secs)); do
  if ! kill -0 "$qemu" 2>/dev/null; then
    echo "qemu exited; console:" >&2
    tail -50 "$work/console.log" >&2
    exit 1
  fi
  if [ -z "$ready" ] && grep -q "Started uplink.service" "$work/console.log"; then
    ready=$(($(date +%s) - started))
    echo "uplink.service ready after ${ready} s"
  fi
  if [ -n "$ready" ] && echoscu -to 5 -aec UPLINK 127.0.0.1 "$port" 2>/dev/null; then
    echo "C-ECHO answered by the emulated box after $(($(date +%s) - started)) s"
    grep -E "uplink" "$work/console.log" | tail -5
    exit 0
  fi
  sleep 2
done
echo "the box did not answer within ${timeout_secs} s; console:" >&2
tail -60 "$work/console.log" >&2
exit 1
