#!/usr/bin/env bash
# Installs what the test suite needs on Debian (the real DICOM peers: dcmtk, Orthanc
# with its DICOMweb plugin, stunnel for HTTPS) and runs it:
# formatting, lints, unit tests and the end-to-end tests against dcmtk; then the
# Raspberry Pi builds (scripts/arm.sh) and the SD card image with its boot and
# update tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt.sh

# Everything the whole command will call, installed and checked up front: a
# missing tool fails here, in the first minute, not after the builds.
require test arm image smoke update fixtures

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# Real ultrasound files from PyPI, and their transcodes (tests/pixels.rs).
scripts/fixtures.sh
cargo test --locked

# The Raspberry Pi builds: cross-compiled, unit tests and an end-to-end smoke test
# under qemu-user, a .deb per target.
scripts/arm.sh

# The SD card image: built from Debian packages with the aarch64 .deb, then booted
# under qemu-system-aarch64 with a clinic's uplink.toml on its boot partition until
# the provisioned agent answers a C-ECHO and the token is gone from the card.
board/build-image.sh
board/smoke-boot.sh

# Updates from USB sticks under emulation: a good bundle (installed, booted,
# kept, the queue intact), one whose agent does not start (booted once, rolled
# back, the box says why), one signed with a foreign key (refused).
board/update-test.sh

# Power cuts of the box itself: the image under qemu, killed at random moments while
# it receives and uploads to Orthanc (UPLINK_POWERCUT_ROUNDS, default 3 here; the
# README says how to run 50).
UPLINK_POWERCUT_ROUNDS=${UPLINK_POWERCUT_ROUNDS:-3} \
  cargo test --locked --test powercut -- --ignored --nocapture
