#!/usr/bin/env bash
# Boots the SD card image under emulation and checks the box comes up provisioned:
# writes an uplink.toml with a token and its own AE title onto the card's FAT
# partition (mtools, as a clinic would on a laptop), boots qemu-system-aarch64
# (`-M virt`, the image's own kernel and initrd, the whole image as its disk) until
# systemd reports uplink.service started (Type=notify: ready means the DICOM listener
# accepts) and the agent answers a C-ECHO to that AE title on the well-known port 104
# (which provisioning opens to it with the low-port drop-in) through a loopback port
# forward, then reads the card back: the token must be gone from it. Prints the
# boot time.
#
#     board/smoke-boot.sh [IMAGE_DIR]     (default: target/image, from build-image.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt.sh
dir=$(realpath "${1:-target/image}")
timeout_secs=${SMOKE_TIMEOUT:-600}

require smoke

work=$(mktemp -d)
qemu=""
trap 'kill "$qemu" 2>/dev/null || true; rm -rf "$work"' EXIT
# A copy: the boot changes the card (provisioning rewrites uplink.toml).
cp --sparse=always "$dir/uplink.img" "$work/uplink.img"
# The clinic's edit, on the card's first (FAT) partition.
# (The MBR's first entry: its start sector is at byte 446 + 8.)
offset=$(python3 -c 'import struct,sys; f=open(sys.argv[1],"rb"); f.seek(454); print(struct.unpack("<I", f.read(4))[0] * 512)' "$work/uplink.img")
cat >"$work/uplink.toml" <<'TOML'
# Written by smoke-boot.sh.
[listener]
ae_title = "SMOKE_BOX"
port = 104

[[destination]]
name = "cloud"
url = "https://cloud.invalid/dicom-web"
auth = "bearer"
token = "smoke-secret-token"   # the cloud's token
TOML
mcopy -o -i "$work/uplink.img@@$offset" "$work/uplink.toml" ::uplink.toml

# Kept beside the image for a look afterwards.
console="$dir/smoke-console.log"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

started=$(date +%s)
qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -nographic \
  -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" \
  -append "root=LABEL=RASPIROOT rw console=ttyAMA0 systemd.show_status=1" \
  -drive file="$work/uplink.img",if=none,format=raw,id=card \
  -device virtio-blk-pci,drive=card \
  -netdev user,id=net,hostfwd=tcp:127.0.0.1:"$port"-:104 \
  -device virtio-net-pci,netdev=net,romfile= \
  -monitor unix:"$work/monitor",server,nowait \
  >"$console" 2>&1 </dev/null &
qemu=$!

ready=""
while (($(date +%s) - started < timeout_secs)); do
  if ! kill -0 "$qemu" 2>/dev/null; then
    echo "qemu exited; console:" >&2
    tail -50 "$console" >&2
    exit 1
  fi
  # systemd colours the unit name: strip the escapes before looking.
  if [ -z "$ready" ] && sed 's/\x1b\[[0-9;]*m//g' "$console" | grep -q "Started uplink.service"; then
    ready=$(($(date +%s) - started))
    echo "uplink.service ready after ${ready} s"
  fi
  if [ -n "$ready" ] && echoscu -to 5 -aec SMOKE_BOX 127.0.0.1 "$port" 2>/dev/null; then
    echo "C-ECHO to SMOKE_BOX answered by the emulated box after $(($(date +%s) - started)) s"
    sed 's/\x1b\[[0-9;]*m//g' "$console" | grep -a "uplink" | tail -5
    # Power the box off cleanly (the power button: systemd shuts down), then read
    # the card as the clinic would.
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"system_powerdown\n")' "$work/monitor"
    for _ in $(seq 90); do kill -0 "$qemu" 2>/dev/null || break; sleep 1; done
    if kill -0 "$qemu" 2>/dev/null; then
      echo "the box did not power off within 90 s" >&2
      exit 1
    fi
    echo "powered off after $(($(date +%s) - started)) s"
    mcopy -o -i "$work/uplink.img@@$offset" ::uplink.toml "$work/card.toml"
    if grep -q smoke-secret-token "$work/card.toml" || ! grep -q '"(installed)"' "$work/card.toml"; then
      echo "the token is still on the card:" >&2
      cat "$work/card.toml" >&2
      exit 1
    fi
    echo "provisioned: the card's uplink.toml now reads: $(grep token "$work/card.toml")"
    exit 0
  fi
  sleep 2
done
echo "the box did not answer within ${timeout_secs} s; console:" >&2
tail -60 "$console" >&2
exit 1
