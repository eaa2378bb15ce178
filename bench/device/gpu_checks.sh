#!/usr/bin/env bash
# The GPU checks of issues 11 and 12 in one call on the lent H200 (device `run`, carry=[".whl"], see
# bench/device/README.md). Installs the carried wheels, checks that the app's pipelines import, then runs each
# check under its own time limit, logs and JSON under $OUT, and prints the tail of each log last.
#
#     bash bench/device/gpu_checks.sh image    # bench/gpu_check.py: backend + memory modes + compile × batch
#     bash bench/device/gpu_checks.sh sdxl     # bench/gpu_check.py --only sdxl|controlnet: SDXL 1024², ControlNet per step
#     bash bench/device/gpu_checks.sh text     # bench/text_gpu.py: R1-14B-shaped GPTQ decode, memory, batching
#     bash bench/device/gpu_checks.sh smoke    # install + imports + the --tiny runs on CUDA (under a minute)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d)}
what=${1:-smoke}
stamp() { echo "[$(date +%T)] $*"; }

ls .whl/*.whl >/dev/null 2>&1 || { echo "no .whl/: build it with bash bench/device/wheels.sh and carry it"; exit 3; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "installing the carried wheels failed"; exit 3; }
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GPTQMODEL_OFFLINE=1 \
  TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.csv"
python3 - <<'PY' 2>&1 | tee "$OUT/versions.txt" || { echo "the pipelines do not import"; exit 4; }
import importlib.metadata as md, shutil, subprocess, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
for name in ("diffusers", "transformers", "gptqmodel", "torchao", "optimum", "accelerate", "huggingface_hub",
             "tokenizers", "pydantic", "triton", "numpy"):
    print(f"  {name} {md.version(name)}")
nvcc = shutil.which("nvcc")
print("nvcc", nvcc, subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.splitlines()[-1]
      if nvcc else "")
import pipelines.diffusers_backend, pipelines.transformers_backend, pipelines.gptq_kernels  # noqa: E401,F401
print("pipelines import")
PY

check() {  # name, seconds, script and arguments
  local name=$1 limit=$2; shift 2
  stamp "start $name (limit ${limit} s)"
  timeout --signal=INT --kill-after=20 "$limit" python3 "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  stamp "$name: rc $rc$([ $rc = 124 ] && echo ' (time limit)')"
  echo "$name rc=$rc" >>"$OUT/summary.txt"
}

case "$what" in
  smoke)
    check gpu_check_tiny 120 bench/gpu_check.py --tiny --runs 2 --batches 1,2 --out "$OUT/gpu_check_tiny.json"
    check text_gpu_tiny 120 bench/text_gpu.py --tiny --runs 1 --out "$OUT/text_gpu_tiny.json" ;;
  image)
    check gpu_check_backend 200 bench/gpu_check.py --only backend --out "$OUT/gpu_check_backend.json"
    check gpu_check_compile 330 bench/gpu_check.py --only compile --runs 3 --out "$OUT/gpu_check_compile.json" ;;
  sdxl)
    # SDXL base's architecture (random fp16 weights, ~7 GB written first) at 1024², 30 steps; ControlNet at 512².
    check gpu_check_sdxl 330 bench/gpu_check.py --only sdxl --size 1024 --steps 30 --runs 3 \
      --out "$OUT/gpu_check_sdxl.json"
    check gpu_check_controlnet 200 bench/gpu_check.py --only controlnet --runs 3 --out "$OUT/gpu_check_controlnet.json" ;;
  text)
    # The ~10 GB checkpoint is written first; the first load compiles gptqmodel's kernel (minutes, once).
    check text_gpu 540 bench/text_gpu.py --runs 2 --checkpoint-dir /tmp/r1-14b-gptq --out "$OUT/text_gpu.json" ;;
  *) echo "usage: gpu_checks.sh smoke|image|sdxl|text"; exit 2 ;;
esac
for log in "$OUT"/*.log; do echo "=== $(basename "$log") (last lines)"; tail -n 30 "$log"; done
cat "$OUT/summary.txt"
