#!/usr/bin/env bash
# Packs what a run on the lent GPU machine needs (../shared/GPU-MACHINE.md: it has no
# Node.js and no network, and the carry must stay under 64 MiB) into two git-ignored
# folders, built here:
#   .gl/    the Vulkan loader (Debian's libvulkan1 .deb); NVIDIA's driver is on the machine
#   .node/  node.xz (this machine's node binary) and app.tar.xz (dist/ and the production
#           node_modules, Dawn's prebuilt binary for linux-x64 only)
# Then, with the device tool:
#   run(command="bash scripts/gpu-machine/run.sh", carry=[".gl", ".node"], timeout_s=...)
# run.sh unpacks them there, runs the benchmarks and leaves their JSON and logs in $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
npm run build --silent
mkdir -p .gl .node
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  lists=$(mktemp -d)
  mkdir -p "$lists/partial"
  apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
  apt-get "${apt[@]}" update -qq
  (cd .gl && apt-get "${apt[@]}" download libvulkan1)
  rm -rf "$lists"
fi
node_bin=$(readlink -f "$(command -v node)")
[ .node/node.xz -nt "$node_bin" ] || xz -T2 -9 -c "$node_bin" > .node/node.xz
# The production dependency tree only (no vitest, typescript, prettier or test tokenizers),
# and of webgpu's prebuilt Dawn binaries only the one for this platform.
mapfile -t modules < <(npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$PWD/||" | grep '^node_modules/' | sort -u)
tar -cf - --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' dist package.json "${modules[@]}" | xz -T2 -9 > .node/app.tar.xz
du -ch .gl/* .node/* | tail -n 1 | sed 's/total/carry (must stay under 64 MiB)/'
