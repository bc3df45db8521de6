#!/usr/bin/env bash
# Updates and rollback of the SD card image under emulation (qemu's virt machine
# booting the card through UEFI and the card's GRUB, as on a box):
#   1. the box boots slot A and takes three exams for a cloud it cannot reach;
#   2. a USB stick with a good bundle (the same system, a new version) goes in:
#      RAUC installs it into slot B, the box reboots into B, the health check
#      marks B good;
#   3. the update server (`[update] url`, a plain HTTP server on the host, which
#      the box reaches as 10.0.2.2) offers a bundle whose agent does not start: the
#      agent on B downloads it, uplink-update.service installs it into A, the box
#      boots A once, the check fails, A is marked bad and the box is back on B,
#      which says the update was rolled back and why, and does not install the
#      same bundle again when it finds it on the server once more;
#   4. a stick with a bundle signed by another key: refused, nothing installed;
#   then the card is read: B runs the new version, the record says what happened,
#   and the three exams still wait in the queue.
#
#     board/update-test.sh [IMAGE_DIR]     (default: target/image; ~15 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt.sh
source board/qemu.sh
dir=$(realpath "${1:-target/image}")
require update smoke

work=$(mktemp -d)
console="$dir/update-console.log"
server=""
trap 'kill "$qemu" $server 2>/dev/null || true; rm -rf "$work"' EXIT
version=$(cat "$dir/version")
# The version as a pattern for await (it has dots and a plus).
v=$(printf '%s' "$version" | sed 's/[.+]/\\&/g')
cargo build --locked --release --example fixtures
started=$(date +%s)

# A bundle of the image's own root slot with another version; "broken" also
# keeps its agent from starting (a drop-in, as a bad release would).
bundle() {
  local name=$1 v=$2 root="$work/$1.ext4"
  cp --sparse=always "$dir/root.ext4" "$root"
  echo "VERSION=$v" >"$work/uplink-image"
  printf '[Service]\nExecStart=\nExecStart=/bin/false\n' >"$work/broken.conf"
  {
    echo "rm /etc/uplink-image"
    echo "write $work/uplink-image /etc/uplink-image"
    if [ "$name" = broken ]; then
      echo "mkdir /etc/systemd/system/uplink.service.d"
      echo "write $work/broken.conf /etc/systemd/system/uplink.service.d/broken.conf"
    fi
  } >"$work/$name.debugfs"
  debugfs -w -f "$work/$name.debugfs" "$root" >/dev/null 2>&1
  board/build-bundle.sh --root "$root" --version "$v" "$work/$name.raucb"
  rm -f "$root"
}
# A USB stick (FAT, no partition table) carrying a bundle as uplink-update.raucb.
stick() {
  local name=$1 size
  size=$(($(stat -c %s "$work/$name.raucb") / 1048576 + 64))
  truncate -s "${size}M" "$work/$name.stick"
  mkfs.vfat -F 32 -n UPDATE "$work/$name.stick" >/dev/null
  mcopy -i "$work/$name.stick" "$work/$name.raucb" ::uplink-update.raucb
}
plug() {
  monitor "drive_add 0 if=none,id=$1,format=raw,file=$work/$1.stick"
  monitor "device_add usb-storage,bus=xhci.0,drive=$1,id=$1-stick"
}
unplug() {
  monitor "device_del $1-stick"
}

bundle good "$version+next"
bundle broken "$version+broken"
# The third is signed by a key the image does not trust; its content never matters.
mkdir -p "$work/other-key"
openssl req -x509 -newkey rsa:3072 -nodes -days 1 -subj "/CN=not the fleet" \
  -keyout "$work/other-key/key.pem" -out "$work/other-key/cert.pem" 2>/dev/null
mkdir "$work/forged" && head -c 1M /dev/urandom >"$work/forged/noise"
truncate -s 16M "$work/forged.ext4" && mkfs.ext4 -q -d "$work/forged" "$work/forged.ext4"
UPLINK_SIGNING_DIR="$work/other-key" board/build-bundle.sh --root "$work/forged.ext4" \
  --version "$version+forged" "$work/forged.raucb"
for name in good forged; do stick "$name"; done
mkdir "$work/site"
server_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$work/site" "$server_port" >"$work/server.log" 2>&1 &
server=$!
echo "bundles and sticks ready after $(($(date +%s) - started)) s"

cp --sparse=always "$dir/uplink.img" "$work/card.img"
# A card larger than the image, as every real one is: the data partition grows to it.
truncate -s 6G "$work/card.img"
offset=$(partition_offset "$work/card.img" 1)
cat >"$work/uplink.toml" <<TOML
[listener]
ae_title = "UPDATE_BOX"
port = 104

[[destination]]
name = "cloud"
url = "https://cloud.invalid/dicom-web"

[update]
url = "http://10.0.2.2:$server_port/uplink-update.raucb"
insecure = true
TOML
mcopy -o -i "$work/card.img@@$offset" "$work/uplink.toml" ::uplink.toml
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

echo "1. slot A, version $version"
boot_efi "$work/card.img" "$port"
await "uplink: booting slot A" 120
await "health check passed on slot A" 600
for i in 1 2 3; do
  target/release/examples/fixtures phi "$work/exam$i.dcm" UPDATE^TEST 51 "$i" >/dev/null
done
if ! storescu -v -aec UPDATE_BOX 127.0.0.1 "$port" "$work"/exam*.dcm >"$work/storescu.log" 2>&1; then
  echo "storescu failed:" >&2
  cat "$work/storescu.log" >&2
  exit 1
fi
echo "  three exams stored"

echo "2. a stick with $version+next"
plug good
await "installing update $v\+next into slot B" 120
await "uplink: booting slot B" 900
await "health check passed: slot B \($v\+next\) marked good" 600
unplug good

echo "3. the update server offers $version+broken (its agent does not start)"
mv "$work/broken.raucb" "$work/site/uplink-update.raucb"
await "installing update $v\+broken into slot A" 300
await "uplink: booting slot A" 900
await "health check of update $v\+broken failed: the agent is not running" 600
await "uplink: booting slot B" 300
await "the update to $v\+broken was rolled back" 600
await "update $v\+broken was rolled back before .*: not installing it again" 300
echoscu -to 10 -aec UPDATE_BOX 127.0.0.1 "$port"
echo "  the box answers C-ECHO on slot B again"

echo "4. a stick with a bundle signed by another key"
plug forged
await "update refused: .*signature" 300
unplug forged

monitor system_powerdown
for _ in $(seq 90); do kill -0 "$qemu" 2>/dev/null || break; sleep 1; done
record=$(data_file "$work/card.img" /uplink/update.json)
status=$(data_file "$work/card.img" /uplink/status.json)
python3 - "$version" "$record" "$status" <<'PY'
import json, sys
version, record, status = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
assert record["running"] == {"slot": "B", "image": version + "+next"}, record
assert record["pending"] is None, record
assert record["last"]["result"] == "refused", record
pending = status["destinations"][0]["pending"]
assert pending == 3, f"the queue holds {pending} exams, not the 3 sent before the updates"
print(f"card: slot B runs {version}+next, last update refused, 3 exams still queued")
PY
echo "update test passed in $(($(date +%s) - started)) s"
