#!/usr/bin/env bash
# Builds a signed RAUC update bundle for the box: the root slot of an image built
# by board/build-image.sh (so the same Debian packages, today's bookworm and
# bookworm-security, and the same .deb), in a dm-verity bundle signed with the
# key of board/signing.sh. Without --root it builds that image first.
#
#     board/build-bundle.sh [--root ROOT_EXT4 --version VERSION] OUT.raucb
#
# Put OUT.raucb on a USB stick as uplink-update.raucb, or on an HTTPS server for
# `[update] url` (README, "Updating the box").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt.sh
root="" version=""
while (($# > 1)); do
  case $1 in
    --root) root=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
out=$(realpath -m "${1:?usage: build-bundle.sh [--root ROOT_EXT4 --version VERSION] OUT.raucb}")
require bundle

if [ -z "$root" ]; then
  board/build-image.sh target/bundle-image
  root=target/bundle-image/root.ext4
  version=$(cat target/bundle-image/version)
fi
[ -n "$version" ] || { echo "--root needs --version" >&2; exit 2; }
signing=$(board/signing.sh)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp --sparse=always "$root" "$work/rootfs.ext4"
cat >"$work/manifest.raucm" <<MANIFEST
[update]
compatible=uplink-arm64
version=$version
description=uplink box system $version

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST
rm -f "$out"
rauc bundle --cert="$signing/cert.pem" --key="$signing/key.pem" \
  --mksquashfs-args="-comp zstd" "$work" "$out"
echo "bundle $version: $out ($(du -h "$out" | cut -f1))"
