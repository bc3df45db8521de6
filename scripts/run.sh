#!/usr/bin/env bash
# Runs the agent from source on its built-in defaults (no config file needed):
# installs what the build needs from Debian's packages first (a C++ compiler and
# CMake, for CharLS), then `cargo run --release -- serve`. Arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt.sh
require build
exec cargo run --locked --release -- serve "$@"
