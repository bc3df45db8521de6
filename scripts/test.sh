#!/usr/bin/env bash
# Installs what the test suite needs on Debian (the real DICOM peers: dcmtk, Orthanc
# with its DICOMweb plugin, stunnel for HTTPS) and runs it:
# formatting, lints, unit tests and the end-to-end tests against dcmtk.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(dcmtk orthanc orthanc-dicomweb stunnel4 openssl curl qpdf dicom3tools systemd util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing test dependencies: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked

# The Raspberry Pi builds: cross-compiled, unit tests and an end-to-end smoke test
# under qemu-user, a .deb per target.
scripts/arm.sh
