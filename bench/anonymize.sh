#!/usr/bin/env bash
# Offline anonymization throughput and peak memory: `uplink anonymize` (strict and
# typical) beside gdcmanon (GDCM, PS3.15 basic profile; Debian libgdcm-tools) and
# dicognito (Python; PyPI) on the same files: N ultrasound images 800x600 RGB full of
# patient data, and one native multi-frame clip.
#
# Then burned-in text in compressed clips: a real GE screen (no regions: the image
# area is found in the pixels) as a FRAMES-frame clip in RLE, JPEG lossless SV1,
# JPEG-LS and JPEG 2000. `uplink anonymize --profile strict` decodes every frame,
# blanks it and writes RLE; beside it, the plain decode + encode of the same frames
# with dcmtk (dcmdrle/dcmcrle, dcmdjpeg/dcmcjpeg, dcmdjpls/dcmcjpls) and GDCM
# (gdcmconv --raw, then back). MB/s counts decoded pixels, the same for every tool.
#
# First, strict JPEG baseline, how most ultrasound machines send cine loops: 5
# instances of 34 frames 800x600 YCbCr 4:2:2 (170 frames), `uplink anonymize
# --profile strict` beside libjpeg-turbo on the same frames (bench/jpeg-roundtrip.c,
# built here): its DCT-coefficient round trip (jpegtran's lossless path) and a full
# decode + blank + encode; wall seconds, and callgrind's instruction counts, which
# are repeatable on a noisy machine.
#
#     bench/anonymize.sh [N] [CLIP_MIB] [FRAMES]   (default: 200 images, 1024 MiB, 100)
#     bench/anonymize.sh jpeg                      (the strict JPEG part only)
#
# Installs what it lacks: libgdcm-tools, libjpeg62-turbo-dev, valgrind and time
# (apt), dicognito (pip), the real screens and pydicom (scripts/fixtures.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
only_jpeg=false
[ "${1:-}" = jpeg ] && { only_jpeg=true; shift; }
n=${1:-200}
clip_mib=${2:-1024}
frames=${3:-100}
command -v gdcmanon >/dev/null && [ -x /usr/bin/time ] && [ -f /usr/include/jpeglib.h ] && command -v valgrind >/dev/null || {
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get install -y -q --no-install-recommends libgdcm-tools time libjpeg62-turbo-dev valgrind >/dev/null
}
python3 -c 'import dicognito' 2>/dev/null || pip install -q dicognito

cargo build --release --quiet --bin uplink --example fixtures
scripts/fixtures.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rounds=3

median() { # "t1 t2 ..." -> the median
  tr ' ' '\n' <<<"$1" | grep . | sort -n | sed -n "$(( ($(wc -w <<<"$1") + 1) / 2 ))p"
}

# Strict JPEG.
j=$work/jpeg
mkdir -p "$j/in" "$j/out"
for i in 1 2 3 4 5; do
  target/release/examples/fixtures phi-jpeg "$j/in/$i.dcm" "J$i" "10$i" "$i" 34
done
PYTHONPATH=target/fixtures/python python3 - "$j/in" "$j/frames.bin" <<'PY'
import pathlib, struct, sys
import pydicom
from pydicom.encaps import generate_frames
with open(sys.argv[2], "wb") as out:
    for path in sorted(pathlib.Path(sys.argv[1]).glob("*.dcm")):
        ds = pydicom.dcmread(path)
        for frame in generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)):
            out.write(struct.pack("<I", len(frame)) + frame)
PY
gcc -O2 -o "$j/roundtrip" bench/jpeg-roundtrip.c -ljpeg
printf '[storage]\ndata_dir = "%s"\n' "$j/data" > "$j/uplink.toml"
frame_bytes=$(( $(stat -c %s "$j/frames.bin") - 4 * 170 ))
declare -A jpeg=(
  ["uplink strict"]="target/release/uplink anonymize --config $j/uplink.toml --profile strict --out $j/out $j/in"
  ["libjpeg-turbo coefficients"]="$j/roundtrip $j/frames.bin $j/out/frames.bin"
  ["libjpeg-turbo pixels"]="$j/roundtrip --pixels $j/frames.bin $j/out/frames.bin"
)
order=("uplink strict" "libjpeg-turbo coefficients" "libjpeg-turbo pixels")
declare -A jt=()
for _ in 1 2 3 4 5; do
  for tool in "${order[@]}"; do
    rm -rf "$j/out"; mkdir -p "$j/out"
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e" -o "$j/time" ${jpeg[$tool]} >/dev/null 2>&1
    jt[$tool]+="$(cat "$j/time") "
  done
done
declare -A ir=()
for tool in "${order[@]}"; do
  rm -rf "$j/out"; mkdir -p "$j/out"
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --callgrind-out-file="$j/cg" ${jpeg[$tool]} >/dev/null 2>"$j/cg.log"
  ir[$tool]=$(grep -o 'refs: *[0-9,]*' "$j/cg.log" | tr -dc 0-9)
done
anchor=$(median "${jt[libjpeg-turbo coefficients]}")
printf '| strict JPEG, 170 frames 800x600 YCbCr 4:2:2 (%d MB of frames) | seconds (median of 5, interleaved) | MB/s of frames | speed ÷ coefficient round trip | instructions (callgrind) | instructions ÷ uplink |\n|---|---:|---:|---:|---:|---:|\n' "$(( frame_bytes / 1000000 ))"
for tool in "${order[@]}"; do
  t=$(median "${jt[$tool]}")
  awk -v n="$tool" -v t="$t" -v a="$anchor" -v b="$frame_bytes" -v i="${ir[$tool]}" -v u="${ir[uplink strict]}" \
    'BEGIN { printf "| %s | %.2f | %.0f | %.2f | %.0f M | %.2f |\n", n, t, b / t / 1e6, a / t, i / 1e6, i / u }'
done
$only_jpeg && exit 0
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

printf '\n| tool | corpus | files out | seconds (median of %d, interleaved) | MB/s | peak RSS MiB |\n|---|---|---:|---:|---:|---:|\n' "$rounds"
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
    awk -v n="$tool" -v c="$corpus" -v f="${files[$tool]}" -v s="$(median "${times[$tool]}")" -v k="${rss[$tool]}" -v b="$bytes" \
      'BEGIN { printf "| %s | %s | %d | %.2f | %.0f | %.1f |\n", n, c, f, s, b / s / 1e6, k / 1024 }'
  done
  unset times rss files
done

# Burned-in text in compressed clips.
mkdir -p "$work/syntaxes"
PYTHONPATH=target/fixtures/python python3 - target/fixtures/ultrasound/US1_UNCR.dcm "$work/syntaxes/native.dcm" "$frames" <<'PY'
import sys
import numpy as np
import pydicom
source, out, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
ds = pydicom.dcmread(source)
frame = ds.pixel_array
# Frames that differ (the image moves a row each frame), as a cine loop's do.
clip = np.stack([np.roll(frame, i % 16, axis=0) for i in range(frames)])
ds.NumberOfFrames = frames
ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
ds.PixelData = clip.tobytes()
ds.save_as(out)
PY
s=$work/syntaxes
dcmcrle "$s/native.dcm" "$s/rle.dcm"
dcmcjpeg +e1 "$s/native.dcm" "$s/jpeg-lossless.dcm"
dcmcjpls "$s/native.dcm" "$s/jpeg-ls.dcm"
gdcmconv --j2k "$s/native.dcm" "$s/jpeg-2000.dcm"
pixels=$(( frames * 640 * 480 * 3 ))

steps() { # "cmd1 ;; cmd2" -> "seconds kib": the sum of the times, the largest peak
  local total=0 peak=0 step
  IFS=';' read -ra parts <<<"${1//;;/;}"
  for step in "${parts[@]}"; do
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e %M" -o "$work/time" $step >/dev/null 2>"$work/stderr" ||
      echo "failed: $step: $(tail -1 "$work/stderr")" >&2
    read -r t k <"$work/time"
    total=$(awk -v a="$total" -v b="$t" 'BEGIN { print a + b }')
    peak=$(( peak > k ? peak : k ))
  done
  echo "$total $peak"
}
u="target/release/uplink anonymize --config $work/uplink.toml --profile strict --out $work/out"
declare -A pipeline=(
  ["rle uplink"]="$u $s/rle.dcm"
  ["rle dcmtk"]="dcmdrle $s/rle.dcm $work/out/n.dcm ;; dcmcrle $work/out/n.dcm $work/out/r.dcm"
  ["rle gdcm"]="gdcmconv --raw $s/rle.dcm $work/out/n.dcm ;; gdcmconv --rle $work/out/n.dcm $work/out/r.dcm"
  ["jpeg-lossless uplink"]="$u $s/jpeg-lossless.dcm"
  ["jpeg-lossless dcmtk"]="dcmdjpeg $s/jpeg-lossless.dcm $work/out/n.dcm ;; dcmcjpeg +e1 $work/out/n.dcm $work/out/r.dcm"
  ["jpeg-lossless gdcm"]="gdcmconv --raw $s/jpeg-lossless.dcm $work/out/n.dcm ;; gdcmconv --jpeg $work/out/n.dcm $work/out/r.dcm"
  ["jpeg-ls uplink"]="$u $s/jpeg-ls.dcm"
  ["jpeg-ls dcmtk"]="dcmdjpls $s/jpeg-ls.dcm $work/out/n.dcm ;; dcmcjpls $work/out/n.dcm $work/out/r.dcm"
  ["jpeg-ls gdcm"]="gdcmconv --raw $s/jpeg-ls.dcm $work/out/n.dcm ;; gdcmconv --jpegls $work/out/n.dcm $work/out/r.dcm"
  ["jpeg-2000 uplink"]="$u $s/jpeg-2000.dcm"
  ["jpeg-2000 gdcm"]="gdcmconv --raw $s/jpeg-2000.dcm $work/out/n.dcm ;; gdcmconv --j2k $work/out/n.dcm $work/out/r.dcm"
)
printf '\n| syntax (%d frames 640x480 RGB) | tool | seconds (median of %d) | MB/s of pixels | peak RSS MiB |\n|---|---|---:|---:|---:|\n' "$frames" "$rounds"
for syntax in rle jpeg-lossless jpeg-ls jpeg-2000; do
  for tool in uplink dcmtk gdcm; do
    key="$syntax $tool"
    [ -n "${pipeline[$key]:-}" ] || continue
    times="" peak=0
    for _ in $(seq 1 "$rounds"); do
      rm -rf "$work/out"; mkdir -p "$work/out"
      read -r t k < <(steps "${pipeline[$key]}")
      times+="$t "
      peak=$(( peak > k ? peak : k ))
    done
    awk -v s="$syntax" -v n="$tool" -v t="$(median "$times")" -v k="$peak" -v b="$pixels" \
      'BEGIN { printf "| %s | %s | %.2f | %.0f | %.1f |\n", s, n, t, b / t / 1e6, k / 1024 }'
  done
done
