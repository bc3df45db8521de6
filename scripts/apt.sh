# Sourced by the scripts that need Debian packages. Each part of the test command
# names the commands (or files) it calls and the package that brings each;
# `require PART...` installs the packages that are missing (apt-get, with sudo when
# not root) and then checks, by command, that every one is there. A package can be
# installed and still lack a command (a Recommends left out, a file moved), so the
# check is by command, not by package: a gap fails in the first minute, with its
# package's name.
#
# An entry is COMMAND:PACKAGE, or /FILE:PACKAGE, or COMMAND:PACKAGE@SUITE for a
# package from another suite (bookworm-backports).

# Building the agent: CharLS (the JPEG-LS decoder) is C++ built with CMake.
tools_build=(cc:gcc c++:g++ cmake:cmake)
# The end-to-end tests: the real DICOM peers and tools they run.
tools_test=(
  "${tools_build[@]}" dcmdrle:dcmtk dcmdjpls:dcmtk gdcmconv:libgdcm-tools
  dcmdump:dcmtk echoscu:dcmtk storescu:dcmtk storescp:dcmtk pdf2dcm:dcmtk dcmdjpeg:dcmtk
  Orthanc:orthanc /usr/share/orthanc/plugins/libOrthancDicomWeb.so:orthanc-dicomweb
  stunnel:stunnel4 openssl:openssl curl:curl qpdf:qpdf dciodvfy:dicom3tools
  systemd-analyze:systemd unshare:util-linux base64:coreutils ip:iproute2 python3:python3 strace:strace
  squid:squid /usr/lib/squid/digest_file_auth:squid htpasswd:apache2-utils mitmdump:mitmproxy
  nginx:nginx-light /usr/lib/nginx/modules/ngx_http_js_module.so:libnginx-mod-http-js
  chromium:chromium /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:fonts-dejavu-core
)
# scripts/arm.sh: cross linkers, the targets' C libraries, qemu-user.
tools_arm=(
  "${tools_build[@]}"
  aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu aarch64-linux-gnu-g++:g++-aarch64-linux-gnu
  arm-linux-gnueabihf-g++:g++-arm-linux-gnueabihf
  /usr/aarch64-linux-gnu/include/stdio.h:libc6-dev-arm64-cross
  arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf
  /usr/arm-linux-gnueabihf/include/stdio.h:libc6-dev-armhf-cross
  qemu-aarch64-static:qemu-user-static qemu-arm-static:qemu-user-static
  echoscu:dcmtk storescu:dcmtk
)
# scripts/fixtures.sh: the real ultrasound files and their transcodes (dcmtk, GDCM).
tools_fixtures=(
  python3:python3 node:nodejs npm:npm dcmcrle:dcmtk dcmcjpeg:dcmtk dcmcjpls:dcmtk gdcmconv:libgdcm-tools
)
# board/build-image.sh: mmdebstrap for a foreign architecture (it needs arch-test),
# qemu-user through binfmt_misc, genimage and the file system tools it calls.
tools_image=(
  mmdebstrap:mmdebstrap arch-test:arch-test openssl:openssl
  qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support
  genimage:genimage mkdosfs:dosfstools mcopy:mtools mke2fs:e2fsprogs python3:python3
)
# board/build-bundle.sh: RAUC makes and signs the bundle, with squashfs-tools.
tools_bundle=(rauc:rauc mksquashfs:squashfs-tools openssl:openssl)
# board/update-test.sh: the bundles, UEFI firmware for qemu's virt machine (it
# starts the card's GRUB), debugfs to change a slot, mtools for a USB stick.
tools_update=(
  "${tools_bundle[@]}"
  /usr/share/qemu-efi-aarch64/QEMU_EFI.fd:qemu-efi-aarch64
  debugfs:e2fsprogs mcopy:mtools mkfs.vfat:dosfstools echoscu:dcmtk storescu:dcmtk
)
# board/smoke-boot.sh and the power-cut campaign (tests/powercut.rs): qemu-system-arm
# from backports (bookworm's conflicts with newer qemu-utils), mtools for the card's
# FAT partition, debugfs to read its root, dcmtk, Orthanc.
tools_smoke=(
  qemu-system-aarch64:qemu-system-arm@bookworm-backports
  mcopy:mtools debugfs:e2fsprogs dd:coreutils echoscu:dcmtk storescu:dcmtk curl:curl
  Orthanc:orthanc /usr/share/orthanc/plugins/libOrthancDicomWeb.so:orthanc-dicomweb
  python3:python3
)

# Installs what PART... needs and checks every command is there.
require() {
  local part entries=() entry what pkg suite missing=() backports=() sudo=""
  for part in "$@"; do
    local -n list="tools_$part"
    entries+=("${list[@]}")
  done
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  for entry in "${entries[@]}"; do
    what=${entry%%:*} pkg=${entry#*:} suite=""
    [[ $pkg == *@* ]] && suite=${pkg#*@} pkg=${pkg%@*}
    present "$what" && continue
    if [ -n "$suite" ]; then
      backports+=("$pkg")
    else
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} + ${#backports[@]})); then
    echo "installing: $(printf "%s\n" "${missing[@]}" "${backports[@]}" | sort -u | tr "\n" " ")"
    if ((${#backports[@]})) && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d; then
      echo "deb http://deb.debian.org/debian bookworm-backports main" |
        $sudo tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    $sudo apt-get update -q
    if ((${#missing[@]})); then
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        $(printf '%s\n' "${missing[@]}" | sort -u)
    fi
    if ((${#backports[@]})); then
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        -t bookworm-backports $(printf '%s\n' "${backports[@]}" | sort -u)
    fi
  fi
  local absent=()
  for entry in "${entries[@]}"; do
    what=${entry%%:*} pkg=${entry#*:}
    present "$what" || absent+=("$what (package ${pkg%@*})")
  done
  if ((${#absent[@]})); then
    printf 'missing after installing: %s\n' "${absent[@]}" >&2
    return 1
  fi
}

present() {
  if [[ $1 == /* ]]; then
    [ -e "$1" ]
  else
    command -v "$1" >/dev/null 2>&1
  fi
}
