#!/usr/bin/env bash
# Builds the uplink SD card image for a Raspberry Pi 3, 4, 5 or Zero 2 W (arm64) from
# Debian packages only: a minimal Debian bookworm rootfs (mmdebstrap under
# qemu-user), Debian's arm64 kernel and raspi-firmware, uplink's own .deb, network by
# DHCP (systemd-networkd), time by systemd-timesyncd, no SSH server. The FAT boot
# partition carries uplink.toml, the one file a clinic edits; at boot
# uplink-provision.service validates and installs it.
#
#     board/build-image.sh [OUT_DIR]     (default: target/image; takes some minutes)
#
# Output: OUT_DIR/uplink.img (write it with `dd` or Raspberry Pi Imager), and the
# kernel and initrd beside it for board/smoke-boot.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt.sh
out=$(realpath -m "${1:-target/image}")
started=$(date +%s)

require image
# Foreign binaries in the rootfs run through qemu-user via binfmt_misc.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 2>/dev/null || true

deb=$(ls target/aarch64-unknown-linux-gnu/debian/uplink_*_arm64.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  scripts/arm.sh aarch64-unknown-linux-gnu
  deb=$(ls target/aarch64-unknown-linux-gnu/debian/uplink_*_arm64.deb | head -1)
fi

rm -rf "$out"
mkdir -p "$out"
rootfs="$out/rootfs"

# Only the modules a Raspberry Pi (SD card) or the smoke test's qemu virt machine
# need to mount the root: the default initramfs takes ~9 minutes under emulation.
initramfs_hook='
  mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
  echo MODULES=list > "$1/etc/initramfs-tools/conf.d/uplink"
  printf "%s\n" ext4 mmc_block sdhci_iproc bcm2835 bcm2835_dma virtio_mmio virtio_pci virtio_blk \
    > "$1/usr/share/initramfs-tools/modules.d/uplink"
  mkdir -p "$1/etc/default"
  printf "ROOTPART=LABEL=RASPIROOT\nCONSOLES=\"ttyS1,115200 tty0\"\n" > "$1/etc/default/raspi-firmware"
'

mmdebstrap --mode=root --architectures=arm64 --variant=apt \
  --components=main,non-free-firmware \
  --dpkgopt=force-confold --dpkgopt=force-confdef \
  --include=systemd-sysv,udev,kmod,systemd-timesyncd,systemd-resolved,ca-certificates,e2fsprogs,dosfstools,initramfs-tools,linux-image-arm64,raspi-firmware \
  --essential-hook="$initramfs_hook" \
  --customize-hook="copy-in $deb /tmp" \
  --customize-hook='chroot "$1" apt-get install -y -q /tmp/'"$(basename "$deb")" \
  --customize-hook='rm -f "$1"/tmp/*.deb' \
  --customize-hook='echo uplink > "$1/etc/hostname"' \
  --customize-hook='printf "LABEL=RASPIROOT / ext4 rw,noatime,commit=5 0 1\nLABEL=RASPIFIRM /boot/firmware vfat rw,noatime,umask=0077 0 2\n" > "$1/etc/fstab"' \
  --customize-hook='printf "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n" > "$1/etc/systemd/network/90-dhcp.network"' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd systemd-resolved systemd-timesyncd uplink.service uplink-provision.service' \
  --customize-hook='chroot "$1" passwd --lock root' \
  --customize-hook='cp board/uplink.toml "$1/boot/firmware/uplink.toml"' \
  bookworm "$rootfs" http://deb.debian.org/debian

cp "$rootfs"/boot/vmlinuz-* "$out/vmlinuz"
cp "$rootfs"/boot/initrd.img-* "$out/initrd.img"

genimage --config board/genimage.cfg --rootpath "$rootfs" \
  --tmppath "$out/genimage-tmp" --inputpath "$out" --outputpath "$out"
rm -rf "$out/genimage-tmp" "$out/boot.vfat" "$out/root.ext4"

echo "image: $out/uplink.img ($(du -h --apparent-size "$out/uplink.img" | cut -f1)," \
  "$(du -h "$out/uplink.img" | cut -f1) allocated), built in $(($(date +%s) - started)) s"
