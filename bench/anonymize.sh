#!/usr/bin/env bash
# Offline anonymization throughput and peak memory: `uplink anonymize` (strict and
# typical) beside gdcmanon (GDCM, PS3.15 basic profile; Debian libgdcm-tools) and
# dicognito (Python; PyPI) on the same files: N ultrasound images 800x600 RGB full of
# patient data, and one native multi-frame clip.
#
#     bench/anonymize.sh [N] [CLIP_MIB]        (default: 200 images, 1024 MiB clip)
#
# Installs what it lacks: libgdcm-tools and time (apt), dicognito (pip).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
clip_mib=${2:-1024}
command -v gdcmanon >/dev/null && [ -x /usr/bin/time ] || {
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get install -y -q --no-install-recommends libgdcm-tools time >/dev/null
}
python3 -c 'import dicognito' 2>/dev/null || pip install -q dicognito

cargo build --release --quiet --bin uplink --example fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/images" "$work/clip"
for i in $(seq 1 "$n"); do
  target/release/examples/fixtures phi "$work/images/$i.dcm" "P$((i % 20))" "$((i % 20))" "$i"
done
target/release/examples/fixtures clip "$work/clip/clip.dcm" 1.2.826.0.1.3680043.10.60.1 "$clip_mib"
printf '[storage]\ndata_dir = "%s"\n' "$work/data" > "$work/uplink.toml"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" -days 1 -subj "/CN=bench" 2>/dev/null

run() { # command... -> "seconds kib files"
  rm -rf "$work/out"; mkdir -p "$work/out"
  sync
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || echo "failed: $(tail -1 "$work/stderr")" >&2
  echo "$(cat "$work/time") $(find "$work/out" -type f | wc -l)"
}

tools=("uplink strict" "uplink typical" "gdcmanon -e" "dicognito")
command_of() { # tool corpus
  case $1 in
    "uplink strict") echo target/release/uplink anonymize --config "$work/uplink.toml" --profile strict --out "$work/out" "$work/$2" ;;
    "uplink typical") echo target/release/uplink anonymize --config "$work/uplink.toml" --profile typical --out "$work/out" "$work/$2" ;;
    "gdcmanon -e") echo gdcmanon -e -c "$work/cert.pem" -r -i "$work/$2" -o "$work/out" ;;
    dicognito) echo python3 -m dicognito --assume-burned-in-annotation never -o "$work/out" "$work/$2" ;;
  esac
}

rounds=3
printf '| tool | corpus | files out | seconds (median of %d, interleaved) | MB/s | peak RSS MiB |\n|---|---|---:|---:|---:|---:|\n' "$rounds"
for corpus in images clip; do
  bytes=$(du -sb "$work/$corpus" | cut -f1)
  declare -A times=() rss=() files=()
  for round in $(seq 1 "$rounds"); do
    for tool in "${tools[@]}"; do
      # shellcheck disable=SC2046
      read -r s k f < <(run $(command_of "$tool" "$corpus"))
      times[$tool]+="$s "
      rss[$tool]=$(( ${rss[$tool]:-0} > k ? ${rss[$tool]:-0} : k ))
      files[$tool]=$f
    done
  done
  for tool in "${tools[@]}"; do
    median=$(echo "${times[$tool]}" | tr ' ' '\n' | grep . | sort -n | sed -n "$(( (rounds + 1) / 2 ))p")
    awk -v n="$tool" -v c="$corpus" -v f="${files[$tool]}" -v s="$median" -v k="${rss[$tool]}" -v b="$bytes" \
      'BEGIN { printf "| %s | %s | %d | %.2f | %.0f | %.1f |\n", n, c, f, s, b / s / 1e6, k / 1024 }'
  done
  unset times rss files
done
