#!/usr/bin/env bash
# Build .whl/: the Python packages the lent GPU machine lacks for bench/gpu_check.py and bench/text_gpu.py, at the
# versions of requirements.txt, for its Python 3.12 (see bench/device/README.md). Run here, where pip reaches the
# package index; the folder is git-ignored and travels with `run`'s carry=[".whl"].
#
#     bash bench/device/wheels.sh [python3.12]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY312=${1:-}
if [ -z "$PY312" ]; then  # a Python 3.12 that runs (pyenv's shim is on PATH even where 3.12 is not selected)
  for candidate in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
    if "$candidate" -V >/dev/null 2>&1; then PY312=$candidate; break; fi
  done
fi
[ -n "$PY312" ] || { echo "no Python 3.12 here to build pypcre for the GPU machine: pass one"; exit 2; }
DEST=.whl
rm -rf "$DEST" && mkdir -p "$DEST"

pin() { grep -E "^$1==" requirements.txt | head -1; }
# What the machine has (its pip list, ../.library/device/KINDS.md) already serves: torch, accelerate, numpy, pillow,
# safetensors, tokenizers, huggingface_hub (1.33, enough for transformers 5.23 and diffusers 0.42), pyarrow,
# pandas, fsspec, xxhash, protobuf, ninja, threadpoolctl, jinja2, requests, psutil.
BINARY=(
  "$(pin diffusers)" "$(pin transformers)" "$(pin optimum)"
  # gptqmodel 7.6's needs that the machine lacks (its Requires-Dist), pinned as they are installed here
  torchao==0.18.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  # pipelines/ validates requests with pydantic
  pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d "$DEST" "${BINARY[@]}"
# Published as source only. gptqmodel is pure Python (it compiles its CUDA kernels on the GPU at first load) and
# needs torch to build: this Python's. pypcre has a C extension: built by a Python 3.12.
python3 -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" "$(pin gptqmodel)"
"$PY312" -m pip wheel -q --no-deps -w "$DEST" defuser==0.0.28 device-smi==0.5.7 logbar==0.4.15 tokenicer==0.0.14 \
  pypcre==0.6.4
ls "$DEST"
du -sh "$DEST"
