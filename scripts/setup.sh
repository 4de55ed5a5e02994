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
npm run build --silent
