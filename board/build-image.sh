#!/usr/bin/env bash
# Builds the uplink SD card image for a Raspberry Pi 3, 4, 5 or Zero 2 W (arm64) from
# Debian packages only: a minimal Debian bookworm rootfs (mmdebstrap under
# qemu-user) with today's bookworm and bookworm-security packages, the kernel of
# bookworm-backports (the first with the Pi 5's device tree), raspi-firmware,
# RAUC and GRUB for A/B updates, uplink's own .deb, network by DHCP
# (systemd-networkd), time by systemd-timesyncd, the name uplink-<serial>.local
# announced by Avahi, no SSH server. The FAT boot
# partition carries uplink.toml, the one file a clinic edits; at boot
# uplink-provision.service validates and installs it. The layout: board/genimage.cfg.
#
#     board/build-image.sh [OUT_DIR]     (default: target/image; takes some minutes)
#
# Output: OUT_DIR/uplink.img (write it with `dd` or Raspberry Pi Imager), the
# kernel, initrd and device trees beside it for board/smoke-boot.sh, and the root
# slot alone (root.ext4) for board/build-bundle.sh.
#
# Updates are signed: the image trusts the certificate of board/signing.sh (the
# fleet's key from UPLINK_SIGNING_DIR, or a development key made on first use).
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
version=${UPLINK_IMAGE_VERSION:-$(basename "$deb" | cut -d_ -f2)+$(date -u +%Y%m%d%H%M)}
signing=$(board/signing.sh)

# Only the modules a Raspberry Pi (SD card) or the smoke test's qemu virt machine
# need to mount the root: the default initramfs takes ~9 minutes under emulation.
# The Pi 3, 4 and Zero 2 W firmware starts U-Boot (config.txt), whose EFI starts
# the card's GRUB as qemu's UEFI does; the Pi 5 (newer than Debian's U-Boot) boots
# the firmware's kernel, slot A.
initramfs_hook='
  mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
  echo MODULES=list > "$1/etc/initramfs-tools/conf.d/uplink"
  printf "%s\n" ext4 mmc_block sdhci_iproc sdhci_brcmstb bcm2835 bcm2835_dma virtio_mmio virtio_pci virtio_blk \
    > "$1/usr/share/initramfs-tools/modules.d/uplink"
  mkdir -p "$1/etc/default"
  printf "ROOTPART=\"PARTUUID=75706c6b-02 rauc.slot=A\"\nCONSOLES=\"ttyS1,115200 tty0\"\n" > "$1/etc/default/raspi-firmware"
  printf "%s\n" "# uplink: U-Boot, then the card GRUB, chooses the root slot (A/B updates)." \
    "[pi3]" "kernel=u-boot.bin" "[pi4]" "kernel=u-boot.bin" "[pi02]" "kernel=u-boot.bin" "[all]" \
    > "$1/etc/default/raspi-firmware-custom"
'

# The data partition's folders (board/genimage.cfg makes /data its own file
# system): the agent's state and the installed configuration, bound where the
# agent and provisioning expect them.
data_hook='
  mkdir -p "$1/data/update"
  if [ -d "$1/var/lib/uplink" ]; then mv "$1/var/lib/uplink" "$1/data/uplink"; else
    mkdir -m 0700 "$1/data/uplink" && chroot "$1" chown uplink:uplink /data/uplink; fi
  mkdir -p "$1/var/lib/uplink"
  mv "$1/etc/uplink" "$1/data/etc-uplink" && mkdir "$1/etc/uplink"
  printf "%s\n" \
    "LABEL=RASPIFIRM /boot/firmware vfat rw,noatime,umask=0077 0 2" \
    "LABEL=UPLINK_DATA /data ext4 rw,noatime,commit=5 0 2" \
    "/data/uplink /var/lib/uplink none bind 0 0" \
    "/data/etc-uplink /etc/uplink none bind 0 0" > "$1/etc/fstab"
'

# GRUB for the slot choice (board/grub/grub.cfg), as a removable-media EFI binary
# on the FAT partition: the qemu test's UEFI firmware, or U-Boot's EFI on a Pi,
# starts it. Its modules are built in; the env starts with slot A alone.
grub_hook='
  cp "$1/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$1/boot/firmware/u-boot.bin"
  mkdir -p "$1/boot/firmware/EFI/BOOT" "$1/boot/firmware/EFI/uplink"
  chroot "$1" grub-mkimage -O arm64-efi -p /EFI/uplink -o /boot/firmware/EFI/BOOT/BOOTAA64.EFI \
    part_msdos fat ext2 normal linux gzio configfile loadenv regexp test echo search cat ls
  cp board/grub/grub.cfg "$1/boot/firmware/EFI/uplink/grub.cfg"
  chroot "$1" grub-editenv /boot/firmware/EFI/uplink/grubenv create
  chroot "$1" grub-editenv /boot/firmware/EFI/uplink/grubenv set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
  ln -sf "$(basename "$1"/boot/vmlinuz-*)" "$1/boot/vmlinuz"
  ln -sf "$(basename "$1"/boot/initrd.img-*)" "$1/boot/initrd.img"
  for dtb in "$1"/usr/lib/linux-image-*/broadcom/bcm27*-rpi-*.dtb; do
    cp -n "$dtb" "$1/boot/firmware/"
  done
'

mmdebstrap --mode=root --architectures=arm64 --variant=apt \
  --dpkgopt=force-confold --dpkgopt=force-confdef \
  --include=systemd-sysv,udev,kmod,systemd-timesyncd,systemd-resolved,ca-certificates,e2fsprogs,dosfstools,cloud-guest-utils,initramfs-tools,dbus,avahi-daemon,rauc,rauc-service,grub-efi-arm64-bin,u-boot-rpi,linux-image-arm64/bookworm-backports,raspi-firmware \
  --essential-hook="$initramfs_hook" \
  --customize-hook="copy-in $deb /tmp" \
  --customize-hook='chroot "$1" apt-get install -y -q /tmp/'"$(basename "$deb")" \
  --customize-hook='rm -f "$1"/tmp/*.deb' \
  --customize-hook='echo uplink > "$1/etc/hostname"' \
  --customize-hook="echo VERSION=$version > \"\$1/etc/uplink-image\"" \
  --customize-hook='cp -r board/overlay/. "$1/"' \
  --customize-hook='mkdir -p "$1/etc/rauc" && cp board/rauc/system.conf "$1/etc/rauc/system.conf"' \
  --customize-hook="cp $signing/cert.pem \"\$1/etc/rauc/keyring.pem\"" \
  --customize-hook='printf "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n" > "$1/etc/systemd/network/90-dhcp.network"' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd systemd-resolved systemd-timesyncd uplink.service uplink-provision.service uplink-grow-data.service uplink-name.service avahi-daemon.service' \
  --customize-hook='chroot "$1" passwd --lock root' \
  --customize-hook='cp board/uplink.toml "$1/boot/firmware/uplink.toml"' \
  --customize-hook="$grub_hook" \
  --customize-hook="$data_hook" \
  bookworm "$rootfs" \
  "deb http://deb.debian.org/debian bookworm main non-free-firmware" \
  "deb http://deb.debian.org/debian-security bookworm-security main non-free-firmware" \
  "deb http://deb.debian.org/debian bookworm-backports main non-free-firmware"

cp "$rootfs"/boot/vmlinuz-* "$out/vmlinuz"
cp "$rootfs"/boot/initrd.img-* "$out/initrd.img"
cp "$rootfs"/boot/firmware/bcm2*-rpi-*.dtb "$rootfs/boot/firmware/u-boot.bin" "$out/"
echo "$version" > "$out/version"

genimage --config board/genimage.cfg --rootpath "$rootfs" \
  --tmppath "$out/genimage-tmp" --inputpath "$out" --outputpath "$out"
rm -rf "$out/genimage-tmp" "$out/boot.vfat" "$out/data.ext4"

echo "image $version: $out/uplink.img ($(du -h --apparent-size "$out/uplink.img" | cut -f1)," \
  "$(du -h "$out/uplink.img" | cut -f1) allocated), built in $(($(date +%s) - started)) s"
