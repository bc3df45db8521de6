#!/usr/bin/env bash
# Boots the SD card image under emulation and checks the box comes up provisioned:
# writes an uplink.toml with a token and its own AE title onto the card's FAT
# partition (mtools, as a clinic would on a laptop), then
#   - qemu's virt machine boots the whole card as a box does, through UEFI and the
#     card's GRUB (slot A), until systemd reports uplink.service started (Type=notify:
#     ready means the DICOM listener accepts), the health check passes and the agent
#     answers a C-ECHO to that AE title on the well-known port 104 (which provisioning
#     opens to it with the low-port drop-in) through a loopback port forward; its
#     status page answers on port 80 (the card's [web], with an access token) with
#     the box's name, uplink-<serial>.local, which Avahi announces; it is powered off
#     and the card read back: the tokens must be gone from it, the name on it;
#   - qemu's Raspberry Pi 3 model (raspi3b) boots the same card as its SD card as the
#     Pi's firmware would (qemu loads the card's u-boot.bin with its
#     bcm2837-rpi-3-b.dtb in the firmware's place): U-Boot's EFI, the card's GRUB,
#     slot A, until uplink.service starts.
# Prints the boot times.
#
#     board/smoke-boot.sh [IMAGE_DIR]     (default: target/image, from build-image.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt.sh
source board/qemu.sh
dir=$(realpath "${1:-target/image}")
timeout_secs=${SMOKE_TIMEOUT:-600}

require smoke

work=$(mktemp -d)
trap 'kill "$qemu" 2>/dev/null || true; rm -rf "$work"' EXIT
# A copy: the boot changes the card (provisioning rewrites uplink.toml).
cp --sparse=always "$dir/uplink.img" "$work/uplink.img"
# The clinic's edit, on the card's first (FAT) partition.
offset=$(partition_offset "$work/uplink.img" 1)
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
# The card's own [web] section, as the clinic leaves it, with a token added.
sed -n '/^\[web\]/,/^\[/p' board/uplink.toml | sed '$d' >>"$work/uplink.toml"
echo 'token = "smoke-page-token"' >>"$work/uplink.toml"
grep -q '^port = 80$' "$work/uplink.toml"
mcopy -o -i "$work/uplink.img@@$offset" "$work/uplink.toml" ::uplink.toml
# The Pi's SD card must be a power of two in size; a copy before the boot below.
cp --sparse=always "$work/uplink.img" "$work/sd.img"
truncate -s 4G "$work/sd.img"
# A card larger than the image, as every real one is: the data partition grows to it.
truncate -s 6G "$work/uplink.img"

# Kept beside the image for a look afterwards.
console="$dir/smoke-console.log"
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
web=$(free_port)

echo "qemu virt, UEFI and the card's GRUB:"
started=$(date +%s)
boot_efi "$work/uplink.img" "$port" "$web"
await "uplink: booting slot A" 120
await "Started uplink.service" "$timeout_secs"
echo "uplink.service ready after $(($(date +%s) - started)) s"
await "health check passed on slot A" "$timeout_secs"
for _ in $(seq 30); do
  echoscu -to 5 -aec SMOKE_BOX 127.0.0.1 "$port" 2>/dev/null && break
  sleep 2
done
echoscu -to 5 -aec SMOKE_BOX 127.0.0.1 "$port"
echo "C-ECHO to SMOKE_BOX answered by the emulated box after $(($(date +%s) - started)) s"
# The page: refused without its token, served with it, naming the box as Avahi
# announces it.
# The console read once: `grep -q` ends a pipe early, which pipefail takes for a
# failure of the command feeding it.
booted=$(console_text)
name=$(grep -m1 -Eo 'this box is uplink-[0-9a-f]{8}\.local' <<<"$booted" | cut -d' ' -f4 || true)
if [ -z "$name" ] || ! grep -q "Started avahi-daemon.service" <<<"$booted"; then
  echo "the box did not name itself or Avahi did not start; console:" >&2
  grep -E "uplink|avahi" <<<"$booted" | tail -20 >&2
  exit 1
fi
status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 "http://127.0.0.1:$web/")
page=$(curl -sf --max-time 20 "http://127.0.0.1:$web/?token=smoke-page-token")
if [ "$status" != 401 ] || ! grep -q "$name" <<<"$page" || ! grep -q '<h1>' <<<"$page"; then
  echo "the page on port 80 (without token: HTTP $status) is not the box's:" >&2
  head -c 2000 <<<"$page" >&2
  exit 1
fi
echo "status page served on port 80 as $name: $(grep -m1 -Eo '<h1>[^<]*</h1>' <<<"$page")"
# Power the box off cleanly (the power button: systemd shuts down), then read
# the card as the clinic would.
monitor system_powerdown
for _ in $(seq 90); do kill -0 "$qemu" 2>/dev/null || break; sleep 1; done
if kill -0 "$qemu" 2>/dev/null; then
  echo "the box did not power off within 90 s" >&2
  exit 1
fi
echo "powered off after $(($(date +%s) - started)) s"
mcopy -o -i "$work/uplink.img@@$offset" ::uplink.toml "$work/card.toml"
if grep -Eq 'smoke-(secret|page)-token' "$work/card.toml" || ! grep -q '"(installed)"' "$work/card.toml"; then
  echo "the token is still on the card:" >&2
  cat "$work/card.toml" >&2
  exit 1
fi
echo "provisioned: the card's uplink.toml now reads: $(grep '^token' "$work/card.toml" | tr '\n' ' ')"
mcopy -o -i "$work/uplink.img@@$offset" ::uplink-name.txt "$work/name.txt"
if [ "$(cat "$work/name.txt")" != "$name" ]; then
  echo "uplink-name.txt on the card reads '$(cat "$work/name.txt")', not $name" >&2
  exit 1
fi
echo "the card names the box: uplink-name.txt reads $name"

echo "qemu raspi3b, the card as its SD card, U-Boot and the card's GRUB:"
# The Pi's two UARTs: U-Boot and GRUB print on the mini UART (qemu's second serial
# port), Linux's console is the PL011 (the first).
console="$dir/smoke-console-raspi3b-uboot.log"
started=$(date +%s)
qemu-system-aarch64 -M raspi3b -nographic \
  -kernel "$dir/u-boot.bin" -dtb "$dir/bcm2837-rpi-3-b.dtb" \
  -drive file="$work/sd.img",if=sd,format=raw \
  -serial file:"$dir/smoke-console-raspi3b.log" -serial file:"$console" \
  -monitor unix:"$work/monitor",server,nowait </dev/null >/dev/null 2>&1 &
qemu=$!
console_seen=0
await "uplink: booting slot A" 120
console="$dir/smoke-console-raspi3b.log"
console_seen=0
await "Started uplink.service" "$timeout_secs"
echo "uplink.service ready on the emulated Raspberry Pi 3 after $(($(date +%s) - started)) s"
kill "$qemu"
