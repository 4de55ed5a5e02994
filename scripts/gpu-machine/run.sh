#!/usr/bin/env bash
# Runs on the lent GPU machine (see pack.sh, which builds the carry it unpacks): installs
# the Vulkan loader, points it at NVIDIA's driver, and runs the benchmarks one after
# another, each bounded. Every benchmark's log, its bench/results JSON and the
# bench/RESULTS.md it rewrote land in $OUT; a short summary is printed last (the device
# tool's reply carries only the output's tail).
#   GPU_RUN_STEPS   which steps, in order (default "demo kernels sweep-gemv sweep-matmul sweep-decode engine fold-norms
#                   prompt-scoring speculative lora batching profile"; demo: the demo model's greedy output against its float64
#                   reference, every kernel profile; fold-norms: norms folded into the matmuls against separate dispatches,
#                   interleaved; prompt-scoring: plain against scored (prompt logprobs) prefill; speculative: prompt-lookup
#                   speculative decoding against plain decoding on the demo model; lora: decode and prefill with LoRA
#                   adapters against the base model)
#   STEP_TIMEOUT    seconds per step (default 240)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
if ls .gl/*.deb >/dev/null 2>&1 && ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ]; then
    export VK_DRIVER_FILES="$icd"
    break
  fi
done
NODE=$(command -v node || true)
if [ -f .node/node.xz ]; then
  xz -dc .node/node.xz > /tmp/autoglm-node && chmod +x /tmp/autoglm-node
  NODE=/tmp/autoglm-node
fi
[ -f .node/app.tar.xz ] && tar -xJf .node/app.tar.xz
[ -n "$NODE" ] || { echo "run.sh: no node (pack.sh builds .node/)"; exit 1; }
echo "node $("$NODE" --version), VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}, nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo none)"

summary=()
step() {
  local name=$1 t0=$SECONDS rc
  shift
  timeout "${STEP_TIMEOUT:-240}" "$NODE" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  summary+=("== $name: rc $rc, $((SECONDS - t0)) s ($*)")
  echo "== $name: rc $rc, $((SECONDS - t0)) s"
}
for s in ${GPU_RUN_STEPS:-demo kernels sweep-gemv sweep-matmul sweep-decode engine fold-norms prompt-scoring speculative lora batching profile}; do
  case $s in
    demo) step demo scripts/gpu-machine/demo-check.mjs ;;
    kernels) step kernels dist/bench/kernels.js --quick ;;
    sweep-gemv) step sweep-gemv dist/bench/kernels.js --sweep --only=gemv --quick ;;
    sweep-matmul) step sweep-matmul dist/bench/kernels.js --sweep --only=matmul --quick ;;
    sweep-decode) step sweep-decode dist/bench/kernels.js --sweep --only=decode --quick ;;
    engine) step engine dist/bench/engine.js ;;
    fold-norms) step fold-norms dist/bench/engine.js --fold-norms --rounds=4 ;;
    prompt-scoring) step prompt-scoring dist/bench/engine.js --prompt-scoring --prompt=400 --rounds=4 ;;
    speculative) step speculative dist/bench/engine.js --speculative --rounds=3 ;;
    lora) step lora dist/bench/engine.js --lora --rounds=3 ;;
    batching) BENCH_ROUNDS=${BENCH_ROUNDS:-2} step batching dist/bench/batching.js ;;
    profile) step profile dist/bench/profile.js ;;
    *) echo "run.sh: unknown step $s" ;;
  esac
done
cp bench/results/*.json bench/RESULTS.md "$OUT/" 2>/dev/null
echo
for line in "${summary[@]}"; do
  echo "$line"
  name=${line#== }
  name=${name%%:*}
  # each benchmark prints its adapter and table last
  grep -m1 -i 'adapter' "$OUT/$name.log" || true
  # (without Dawn's limit warnings)
  grep -v '^Warning: ' "$OUT/$name.log" | tail -n 14
done
