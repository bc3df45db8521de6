#!/usr/bin/env bash
# Compares STOW-RS upload throughput into Orthanc with batching off (batch = 1) and on
# (several small instances per request): N single-frame 800x600 RGB ultrasound images
# are received first with the destination unreachable, then drained in one go; the
# time runs from the first instance Orthanc holds to the last.
#
#     bench/upload-batch.sh [N] [BATCH ...]      (default: 200 images; batches 1 8 32)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
n=${1:-200}
shift || true
batches=("$@")
[ ${#batches[@]} -gt 0 ] || batches=(1 8 32)

cargo build --release --quiet --bin uplink --example fixtures
work=$(mktemp -d)
agent=""
orthanc=""
trap 'kill $agent $orthanc 2>/dev/null || true; rm -rf "$work"' EXIT

mkdir -p "$work/images"
for i in $(seq 1 "$n"); do
  target/release/examples/fixtures image "$work/images/$i.dcm" "1.2.826.0.1.3680043.10.9.$i"
done
bytes=$(du -cb "$work"/images/*.dcm | tail -1 | cut -f1)

printf '| batch | instances | seconds | instances/s | MB/s |\n|---:|---:|---:|---:|---:|\n'
for batch in "${batches[@]}"; do
  http_port=$(free_port)
  dicom_port=$(free_port)
  rm -rf "$work/orthanc" "$work/data"
    cat > "$work/uplink.toml" <<TOML
[listener]
port = $dicom_port
bind = "127.0.0.1"
[storage]
data_dir = "$work/data"
min_free_mib = 16
[[destination]]
name = "orthanc"
url = "http://127.0.0.1:$http_port/dicom-web"
insecure = true
batch = $batch
retry_max_secs = 1
TOML
  target/release/uplink serve --config "$work/uplink.toml" 2>"$work/agent.log" &
  agent=$!
  until grep -q "listening for DICOM" "$work/agent.log"; do sleep 0.05; done
  TCP_NODELAY=1 storescu -R -aec UPLINK 127.0.0.1 "$dicom_port" "$work"/images/*.dcm
  start_orthanc "$work/orthanc" "$http_port"
  # Time from the first instance Orthanc holds to the last: the agent's retry wait
  # after the outage is not counted.
  count() { curl -s "http://127.0.0.1:$http_port/statistics" | python3 -c 'import json,sys; print(json.load(sys.stdin)["CountInstances"])'; }
  until [ "$(count)" -gt 0 ]; do sleep 0.02; done
  t0=$(date +%s.%N)
  first=$(count)
  until [ "$(count)" -ge "$n" ]; do sleep 0.02; done
  t1=$(date +%s.%N)
  count=$(( $(count) - first ))
  kill -TERM "$agent" "$orthanc"; wait "$agent" "$orthanc" 2>/dev/null || true
  awk -v b="$batch" -v c="$count" -v t0="$t0" -v t1="$t1" -v per="$((bytes / n))" \
    'BEGIN { printf "| %d | %d | %.2f | %.0f | %.0f |\n", b, c, t1 - t0, c / (t1 - t0), c * per / (t1 - t0) / 1e6 }'
done
