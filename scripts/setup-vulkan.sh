#!/usr/bin/env bash
# Ensures a Vulkan driver that Dawn accepts is present.
# On a machine with a GPU driver installed this does nothing. On a machine without one
# (CI, laptops without Vulkan) it installs Mesa's lavapipe (Vulkan on the CPU).
# Dawn rejects Mesa < 24, so on Debian bookworm the driver comes from bookworm-backports.
set -euo pipefail

have_driver() {
  # any ICD manifest other than a too-old lavapipe counts
  local f
  for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json ${VK_DRIVER_FILES:-}; do
    [ -e "$f" ] || continue
    case "$f" in
      *lvp_icd*) mesa_ok && return 0 ;;
      *) return 0 ;;
    esac
  done
  return 1
}

mesa_ok() {
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo 0)
  dpkg --compare-versions "$v" ge 24 2>/dev/null
}

if have_driver && ldconfig -p | grep -q libvulkan.so.1; then
  echo "setup-vulkan: a Vulkan driver is present"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "setup-vulkan: no Vulkan driver found and no apt-get; install a Vulkan driver (Mesa >= 24 lavapipe works)" >&2
  exit 1
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
. /etc/os-release
if [ "${VERSION_CODENAME:-}" = "bookworm" ]; then
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ] && ! grep -q 'bookworm-backports' "$src"; then
    $SUDO sed -i -E 's/^(Suites: bookworm bookworm-updates)$/\1 bookworm-backports/' "$src"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
else
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
echo "setup-vulkan: installed mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
