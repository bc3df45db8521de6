#!/usr/bin/env bash
# Real ultrasound screens for tests/pixels.rs, into target/fixtures/:
#   - public vendor files (GE, Philips, Siemens, ALOKA, ...) from three PyPI packages,
#     pinned and checked by hash (pydicom's test files, pydicom-data, deid-data);
#   - transcodes of some of them made with dcmtk and GDCM, so that every transfer
#     syntax a modality sends is there: RLE, JPEG lossless (14, 14 SV1), JPEG
#     extended, JPEG-LS lossless and near-lossless, JPEG 2000;
#   - pydicom with numpy, Pillow and pyjpegls, to check that what the agent writes
#     decodes there too, and pynetdicom, the modality of the storage commitment and
#     negotiation tests (tests/peers/);
#   - oidc-provider (npm, OpenID Certified), the OAuth 2.0 server of tests/clouds.rs.
# Run by scripts/test.sh before the tests; cheap when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt.sh
require fixtures

out=target/fixtures
stamp=$out/.complete-v6
[ -f "$stamp" ] && exit 0
rm -rf "$out"
mkdir -p "$out/packages" "$out/ultrasound" "$out/python" "$out/node"

cat >"$out/requirements.txt" <<'REQ'
pydicom==3.0.2 --hash=sha256:abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b
pydicom-data==1.0.0 --hash=sha256:622ac97265f1d91f76b5120b5bd6eb0f57737c392ef863b72c71779c91e33637
deid-data==0.0.20 --hash=sha256:33d455f13c82f76a39e8eb52d2808a35d7cde29c120819e246c863432281b8ed
REQ
python3 -m pip download -q --no-deps --require-hashes \
  -r "$out/requirements.txt" -d "$out/packages"

python3 - "$out" <<'PY'
import sys, tarfile, zipfile, pathlib
out = pathlib.Path(sys.argv[1])
dest = out / "ultrasound"
wanted = {
    "pydicom": ("pydicom/data/test_files/", [
        "examples_rgb_color.dcm", "examples_palette.dcm", "examples_jpeg2k.dcm",
        "examples_ybr_color.dcm", "ExplVR_BigEnd.dcm"]),
    "pydicom_data": ("data_store/data/", [
        "US1_UNCR.dcm", "US1_UNCI.dcm", "US1_J2KR.dcm", "US1_J2KI.dcm",
        "OBXXXX1A.dcm", "OBXXXX1A_2frame.dcm", "OBXXXX1A_expb.dcm", "OBXXXX1A_rle.dcm",
        "OBXXXX1A_rle_2frame.dcm", "gdcm-US-ALOKA-16.dcm", "gdcm-US-ALOKA-16_big.dcm",
        "JPGLosslessP14SV1_1s_1f_8b.dcm", "color3d_jpeg_baseline.dcm",
        "color-pl.dcm", "color-px.dcm"]),
    "deid-data": ("deid_data/data/ultrasounds/", [
        "GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm", "ultrasound-multiframe.dcm"]),
}
found = set()
for package in (out / "packages").iterdir():
    if package.suffix == ".whl":
        archive = zipfile.ZipFile(package)
        members = {n: (lambda n=n: archive.read(n)) for n in archive.namelist()}
    else:
        archive = tarfile.open(package)
        members = {m.name: (lambda m=m: archive.extractfile(m).read())
                   for m in archive.getmembers() if m.isfile()}
    for key, (folder, names) in wanted.items():
        if not package.name.startswith(key + "-"):
            continue
        for name, read in members.items():
            base = name.rsplit("/", 1)[-1]
            if base in names and name.endswith(folder + base):
                (dest / base).write_bytes(read())
                found.add(base)
missing = {n for _, names in wanted.values() for n in names} - found
if missing:
    sys.exit(f"fixtures missing from the packages: {sorted(missing)}")
PY

# Transcodes: each syntax from a screen without regions (GE) and one with them.
us=$out/ultrasound
dcmcrle "$us/US1_UNCR.dcm" "$us/US1_RLE.dcm"
dcmcjpeg +el "$us/US1_UNCR.dcm" "$us/US1_JPEG_P14.dcm"
gdcmconv --jpeg "$us/US1_UNCR.dcm" "$us/US1_JPEG_SV1.dcm"
dcmcjpeg +ee "$us/US1_UNCR.dcm" "$us/US1_JPEG_EXTENDED.dcm"
dcmcjpls "$us/US1_UNCR.dcm" "$us/US1_JLS.dcm"
dcmcjpls +en "$us/US1_UNCR.dcm" "$us/US1_JLS_NEAR.dcm"
gdcmconv --j2k "$us/US1_UNCR.dcm" "$us/US1_J2K_GDCM.dcm"
dcmcjpls +in "$us/RGB_IMAGE.dcm" "$us/RGB_IMAGE_JLS_PLANES.dcm"
dcmcjpls "$us/gdcm-US-ALOKA-16.dcm" "$us/ALOKA_JLS.dcm"
gdcmconv --j2k "$us/OBXXXX1A.dcm" "$us/OBXXXX1A_J2K.dcm"

python3 -m pip install -q --target "$out/python" pydicom==3.0.2 numpy pillow pyjpegls pynetdicom==3.0.4
npm install --silent --no-audit --no-fund --prefix "$out/node" oidc-provider@8.8.1
touch "$stamp"
