#!/usr/bin/env bash
# The Raspberry Pi builds, on this Debian machine and without containers:
#   - installs Debian's cross linkers and qemu-user, and the Rust targets;
#   - builds release binaries for aarch64 (64-bit Pi OS / Debian arm64: Pi 3, 4, 5,
#     Zero 2 W) and armv7 (32-bit armhf) and prints their sizes;
#   - runs the unit tests of each under qemu-user;
#   - smoke-tests each ARM binary end to end under qemu-user: dcmtk echoscu and
#     storescu against it, the instance must arrive in its outbox;
#   - packages a .deb per target (cargo-deb) into target/<triple>/debian/.
#
#     scripts/arm.sh [TRIPLE ...]     (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt.sh

targets=("$@")
((${#targets[@]})) || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

require arm
rustup target add "${targets[@]}"
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb

# Fixtures come from the host build (the generator is an example, not shipped).
cargo build --locked --release --example fixtures
fixtures=target/release/examples/fixtures

smoke() {
  local triple=$1 bin=target/$1/release/uplink runner
  case $triple in
    aarch64*) runner=(qemu-aarch64-static -L /usr/aarch64-linux-gnu) ;;
    armv7*) runner=(qemu-arm-static -L /usr/arm-linux-gnueabihf) ;;
  esac
  local work port pid
  work=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$work/uplink.toml" <<TOML
[listener]
port = $port
bind = "127.0.0.1"
[storage]
data_dir = "$work/data"
min_free_mib = 16
[[destination]]
name = "outbox"
url = "dir:$work/outbox"
profile = "strict"
TOML
  "${runner[@]}" "$bin" --version | grep -q "($triple)"
  "${runner[@]}" "$bin" serve --config "$work/uplink.toml" 2>"$work/log" &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  for _ in $(seq 100); do
    echoscu -aec UPLINK 127.0.0.1 "$port" 2>/dev/null && break
    sleep 0.2
  done
  echoscu -aec UPLINK 127.0.0.1 "$port"
  "$fixtures" phi "$work/in.dcm" DOE 77 1 >/dev/null
  storescu -aec UPLINK 127.0.0.1 "$port" "$work/in.dcm"
  for _ in $(seq 100); do
    [ -n "$(ls -A "$work/outbox" 2>/dev/null)" ] && break
    sleep 0.2
  done
  if [ -z "$(ls -A "$work/outbox" 2>/dev/null)" ]; then
    echo "smoke test on $triple: nothing arrived in the outbox" >&2
    cat "$work/log" >&2
    return 1
  fi
  if grep -rq DOE "$work/outbox"; then
    echo "smoke test on $triple: the strict copy carries the patient's name" >&2
    return 1
  fi
  kill "$pid"
  wait "$pid" || true
  rm -rf "$work"
  echo "smoke test on $triple: C-ECHO answered, C-STORE anonymized into the outbox"
}

for triple in "${targets[@]}"; do
  echo "== $triple"
  cargo build --locked --release --target "$triple"
  cargo test --locked --target "$triple" --lib
  smoke "$triple"
  cargo deb --no-build --target "$triple" --output "target/$triple/debian/"
  size=$(stat -c %s "target/$triple/release/uplink")
  deb=$(ls target/"$triple"/debian/*.deb)
  printf '%s: binary %s bytes (%.1f MiB), %s %s bytes\n' "$triple" "$size" \
    "$(echo "$size / 1048576" | bc -l)" "$(basename "$deb")" "$(stat -c %s "$deb")"
done
