#!/usr/bin/env bash
# Build .whl/: the Python packages the lent GPU machine lacks for bench/gpu_check.py and bench/text_gpu.py, at the
# versions installed here (requirements.txt's), for its Python 3.12 (see bench/device/README.md). Run here, where
# pip reaches the package index; the folder is git-ignored and travels with `run`'s carry=[".whl"].
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

# The versions installed here, which CI tests (pinned in requirements.txt or resolved with them).
installed() {
  python3 -c 'import importlib.metadata as m, sys; print("\n".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' "$@"
}
# What the machine has (its pip list, ../.library/device/KINDS.md) already serves: torch, accelerate, numpy, pillow,
# safetensors, tokenizers, huggingface_hub (1.33, enough for transformers 5.23 and diffusers 0.42), pyarrow,
# pandas, fsspec, xxhash, protobuf, ninja, threadpoolctl, jinja2, requests, psutil.
BINARY_NAMES=(
  diffusers transformers optimum
  # gptqmodel's needs that the machine lacks (its Requires-Dist)
  torchao datasets dill multiprocess
  # pipelines/ validates requests with pydantic
  pydantic pydantic-core annotated-types typing-inspection
)
SOURCE_NAMES=(defuser device-smi logbar tokenicer pypcre)  # published as source only
BINARY=$(installed "${BINARY_NAMES[@]}")  # fails, and stops the script, when one is not installed here
SOURCE=$(installed "${SOURCE_NAMES[@]}")
GPTQMODEL=$(installed gptqmodel)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d "$DEST" $BINARY  # one name==version per word
# Published as source only. gptqmodel is pure Python (it compiles its CUDA kernels on the GPU at first load) and
# needs torch to build: this Python's. pypcre has a C extension: built by a Python 3.12.
python3 -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" "$GPTQMODEL"
"$PY312" -m pip wheel -q --no-deps -w "$DEST" $SOURCE
ls "$DEST"
du -sh "$DEST"
