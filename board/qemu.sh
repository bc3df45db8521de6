# Sourced by the boot tests (smoke-boot.sh, update-test.sh): the emulated box,
# its console and its monitor. Needs $work (a scratch folder) and $console.
#
#   boot_efi CARD PORT [WEB]
#                          qemu's virt machine booting CARD as a Pi would boot
#                          its card, through the firmware's EFI and the card's own
#                          GRUB; the box's port 104 on 127.0.0.1:PORT (and its
#                          page's port 80 on 127.0.0.1:WEB); a USB controller for
#                          sticks.
#   await PATTERN SECS     waits until the console shows PATTERN (grep -E), or
#                          fails with the console's tail.
#   monitor COMMAND        a qemu monitor command (hot-plug a stick, power off).
qemu=""
console_seen=0

boot_efi() {
  local card=$1 port=$2 web=${3:-}
  qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -nographic \
    -bios /usr/share/qemu-efi-aarch64/QEMU_EFI.fd \
    -drive file="$card",if=none,format=raw,id=card \
    -device virtio-blk-pci,drive=card \
    -device qemu-xhci,id=xhci \
    -netdev user,id=net,hostfwd=tcp:127.0.0.1:"$port"-:104${web:+,hostfwd=tcp:127.0.0.1:$web-:80} \
    -device virtio-net-pci,netdev=net,romfile= \
    -monitor unix:"$work/monitor",server,nowait \
    >"$console" 2>&1 </dev/null &
  qemu=$!
  console_seen=0
}

# The console as text: systemd colours unit names, the firmware draws with escapes.
# Empty until qemu has made the file.
console_text() {
  sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\r//g' "$console" 2>/dev/null
}

# Waits for PATTERN in what the console printed since the last await matched.
await() {
  local pattern=$1 secs=$2 started line
  started=$(date +%s)
  while (($(date +%s) - started < secs)); do
    if ! kill -0 "$qemu" 2>/dev/null; then
      echo "qemu exited while waiting for: $pattern; console:" >&2
      console_text | tail -40 >&2
      return 1
    fi
    line=$(console_text | tail -n +$((console_seen + 1)) | grep -n -a -E -m1 "$pattern" || true)
    if [ -n "$line" ]; then
      console_seen=$((console_seen + ${line%%:*}))
      echo "  [$(date +%T)] ${line#*:}"
      return 0
    fi
    sleep 2
  done
  echo "not seen within ${secs} s: $pattern; console:" >&2
  console_text | tail -60 >&2
  return 1
}

monitor() {
  python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b"\n"); time.sleep(1)' \
    "$work/monitor" "$1"
}

# The byte offset of the card's MBR partition N (1-based).
partition_offset() {
  python3 -c 'import struct,sys; f=open(sys.argv[1],"rb"); f.seek(446+16*(int(sys.argv[2])-1)+8); print(struct.unpack("<I", f.read(4))[0] * 512)' "$1" "$2"
}

# A file of the card's data partition (debugfs on a copy of it: no loop device).
data_file() {
  local card=$1 path=$2 offset
  offset=$(partition_offset "$card" 4)
  dd if="$card" of="$work/data.ext4" bs=4M iflag=skip_bytes skip="$offset" conv=sparse status=none
  debugfs -R "cat $path" "$work/data.ext4" 2>/dev/null
  rm -f "$work/data.ext4"
}
