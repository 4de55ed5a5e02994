#!/usr/bin/env bash
# One-time set-up on a fresh machine: a Vulkan driver Dawn accepts, the npm dependencies,
# and the services the test suite starts on loopback (etcd, dnsmasq).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-vulkan.sh
if [ "${AUTOGLM_SKIP_TEST_SERVICES:-0}" != "1" ]; then
  bash scripts/setup-test-services.sh
fi
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
# llama.cpp as the side-by-side peer of `autoglm bench compare` (and its test): optional,
# installed only when asked, with the one prebuilt binary package this platform needs
# (node-llama-cpp's optional platform packages otherwise pull ~700 MB of CUDA builds).
if [ "${AUTOGLM_WITH_LLAMA_CPP:-0}" = "1" ]; then
  platform="$(node -p 'process.platform + "-" + process.arch')"
  mkdir -p .cache/llama-cpp
  [ -f .cache/llama-cpp/package.json ] || echo '{"private": true}' > .cache/llama-cpp/package.json
  npm install --prefix .cache/llama-cpp --no-save --no-package-lock --no-audit --no-fund --omit=optional \
    node-llama-cpp@3.22.1 "@node-llama-cpp/${platform}@3.22.1" ||
    echo "setup: node-llama-cpp could not be installed; bench compare will be skipped"
fi
npm run build --silent
