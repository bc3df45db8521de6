# Sourced by the scripts that need Debian packages: `need_packages WHAT PKG...`
# installs those of PKG that are missing (apt-get, with sudo when not root).
need_packages() {
  local what=$1 missing=() sudo=""
  shift
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing $what: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}
