#!/usr/bin/env bash
# Measures the agent's peak resident memory (VmHWM) and throughput while it receives
# one native multi-frame clip from dcmtk's storescu over loopback, then uploads it to
# Orthanc's DICOMweb plugin (STOW-RS), for several clip sizes. Memory must stay flat:
# the clip streams network -> spool -> network, never into memory.
#
#     bench/memory.sh [SIZE_MIB ...]      (default: 100 1024)
#
# Needs dcmtk, orthanc and orthanc-dicomweb (scripts/test.sh installs them) and about
# 3x the largest size free under /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
sizes=("$@")
[ $# -gt 0 ] || sizes=(100 1024)

cargo build --release --quiet --bin uplink --example fixtures
bin=target/release/uplink
work=$(mktemp -d)
agent=""
orthanc=""
trap 'kill $agent $orthanc 2>/dev/null || true; rm -rf "$work"' EXIT

dicom_port=$(free_port)
http_port=$(free_port)
start_orthanc "$work/orthanc" "$http_port"

hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
printf '| clip | receive s | receive MB/s | peak RSS after receive | upload s | upload MB/s | peak RSS after upload |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|\n'
for mib in "${sizes[@]}"; do
  clip="$work/clip-$mib.dcm"
  target/release/examples/fixtures clip "$clip" "1.2.826.0.1.3680043.10.8.$mib" "$mib"
  data="$work/data-$mib"
  cat > "$work/uplink.toml" <<TOML
[listener]
port = $dicom_port
bind = "127.0.0.1"
[storage]
data_dir = "$data"
min_free_mib = 16
[[destination]]
name = "orthanc"
url = "http://127.0.0.1:$http_port/dicom-web"
insecure = true
TOML
  # Uploads start once the clip is committed, so the two phases are timed apart.
  "$bin" serve --config "$work/uplink.toml" 2>"$work/agent-$mib.log" &
  agent=$!
  until grep -q "listening for DICOM" "$work/agent-$mib.log"; do sleep 0.05; done
  bytes=$(stat -c %s "$clip")
  t0=$(date +%s.%N)
  TCP_NODELAY=1 storescu -R -aec UPLINK 127.0.0.1 "$dicom_port" "$clip"
  t1=$(date +%s.%N)
  rss_receive=$(hwm "$agent")
  until [ -z "$(ls "$data/spool/identified")" ]; do sleep 0.05; done
  t2=$(date +%s.%N)
  rss_upload=$(hwm "$agent")
  kill -TERM "$agent"; wait "$agent" || true
  awk -v mib="$mib" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v b="$bytes" -v r1="$rss_receive" -v r2="$rss_upload" \
    'BEGIN { printf "| %d MiB | %.2f | %.0f | %.1f MiB | %.2f | %.0f | %.1f MiB |\n",
             mib, t1 - t0, b / (t1 - t0) / 1e6, r1 / 1024, t2 - t1, b / (t2 - t1) / 1e6, r2 / 1024 }'
  rm -rf "$clip" "$data"
done
