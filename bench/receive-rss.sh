#!/usr/bin/env bash
# Measures the agent's peak resident memory (VmHWM) and throughput while it receives
# one native multi-frame clip over loopback from dcmtk's storescu, for several clip
# sizes. Memory must stay flat: the clip streams to the spool, never into memory.
#
#     bench/receive-rss.sh [SIZE_MIB ...]      (default: 100 1024)
#
# Needs dcmtk (scripts/test.sh installs it) and about 3x the largest size free on /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ $# -gt 0 ] || sizes=(100 1024)

cargo build --release --quiet --bin uplink --example fixtures
bin=target/release/uplink
work=$(mktemp -d)
trap 'kill $agent 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '| clip | seconds | MB/s | agent peak RSS (VmHWM) |\n|---:|---:|---:|---:|\n'
for mib in "${sizes[@]}"; do
  clip="$work/clip-$mib.dcm"
  target/release/examples/fixtures clip "$clip" "1.2.826.0.1.3680043.10.8.$mib" "$mib"
  data="$work/data-$mib"
  cat > "$work/uplink.toml" <<TOML
[listener]
port = $port
bind = "127.0.0.1"
[storage]
data_dir = "$data"
min_free_mib = 16
TOML
  "$bin" serve --config "$work/uplink.toml" 2>"$work/agent-$mib.log" &
  agent=$!
  until grep -q "listening for DICOM" "$work/agent-$mib.log"; do sleep 0.05; done
  bytes=$(stat -c %s "$clip")
  start=$(date +%s.%N)
  TCP_NODELAY=1 storescu -R -aec UPLINK 127.0.0.1 "$port" "$clip"
  end=$(date +%s.%N)
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
  kill -TERM "$agent"; wait "$agent" || true
  awk -v mib="$mib" -v s="$start" -v e="$end" -v b="$bytes" -v h="$hwm" \
    'BEGIN { t = e - s; printf "| %d MiB | %.2f | %.0f | %.1f MiB |\n", mib, t, b / t / 1e6, h / 1024 }'
  rm -rf "$clip" "$data"
done
