#!/usr/bin/env bash
# Prints the folder that holds the update signing key (key.pem) and its
# certificate (cert.pem): UPLINK_SIGNING_DIR when set (the fleet's own key, kept
# off the build machine's tree), else target/signing, where a development key is
# made on first use. An image trusts the certificate it was built with; only
# bundles signed by its key install on it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${UPLINK_SIGNING_DIR:-target/signing}
if [ ! -e "$dir/key.pem" ]; then
  if [ -n "${UPLINK_SIGNING_DIR:-}" ]; then
    echo "UPLINK_SIGNING_DIR=$dir has no key.pem and cert.pem: put the fleet's update key there" >&2
    exit 1
  fi
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/O=uplink/CN=uplink development updates" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
  echo "made a development signing key in $dir (not for boxes in clinics)" >&2
fi
realpath "$dir"
