# Atelier on an NVIDIA GPU box:
#   docker build -t atelier .
#   docker run --gpus all -p 7860:7860 -v atelier-data:/data -v atelier-hf:/hf-cache atelier
# The torch wheel pinned in requirements.txt (2.13.0, built for CUDA 13.0) ships its own CUDA libraries, cuDNN
# included. The app stage is a CUDA *devel* base for one reason: gptqmodel compiles its fast GPTQ kernels (Machete
# on Hopper, Marlin on Ampere and newer, ExLlamaV2) with nvcc on first use, and without nvcc the 4-bit text model
# falls back to a kernel several times slower (pipelines/gptq_kernels.py, docs/gpu.md "GPTQ kernels").
# Stage 1: the React client, built with Node; only its static files go into the image.
FROM node:20-bookworm-slim AS client
WORKDIR /client
COPY react_frontend/package.json react_frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY react_frontend/ ./
RUN npm run build

# Stage 2: the app. nvcc's major version must match torch's CUDA (13) for torch's extension builder. Kernels are not
# built here: gptqmodel refuses to compile without a visible GPU, and `docker build` has none (see docs/gpu.md, "Docker image").
FROM nvidia/cuda:13.0.2-devel-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential curl \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

# Before its first nvcc build gptqmodel generates kernel sources: Marlin's into its own package folder (root's, so the
# app user could not), Machete's from a CUTLASS release it downloads from GitHub (a GPU box may have no network).
# Neither needs a GPU, so both happen here; the nvcc build itself needs one and runs on the first load.
# Machete serves Hopper alone and Marlin stands in for it, so a failed Machete step says so instead of failing the build.
ENV GPTQMODEL_CACHE_DIR=/opt/gptqmodel-cache
RUN python -c "from gptqmodel.utils.marlin import _ensure_generated_marlin_kernels as g; g()" \
    && { python -c "from gptqmodel.utils.machete import _ensure_generated_machete_sources as g; g()" \
         || echo "WARNING: Machete sources not prepared; Hopper GPUs will use Marlin unless the container can download CUTLASS"; }

COPY . .
COPY --from=client /client/dist /app/react_frontend/dist

# A non-root user owns the data dir and the Hugging Face cache; both are volumes so that images,
# history, downloaded weights and the compiled GPTQ kernels (GPTQMODEL_TORCH_EXTENSIONS_DIR) survive a new container.
# data/tmp exists in the image so that a volume mounted there (each replica's own caches, docker-compose.yml's
# scale profile) starts owned by the atelier user, as Docker copies a mount point's ownership into a new volume.
RUN useradd --create-home --uid 10001 atelier \
    && mkdir -p /data/tmp /hf-cache /opt/gptqmodel-cache \
    && chown -R atelier:atelier /data /hf-cache /opt/gptqmodel-cache
USER 10001

ENV ATELIER_HOST=0.0.0.0 \
    ATELIER_PORT=7860 \
    ATELIER_DATA_DIR=/data \
    HF_HOME=/hf-cache \
    GPTQMODEL_TORCH_EXTENSIONS_DIR=/hf-cache/gptqmodel-kernels \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1
VOLUME ["/data", "/hf-cache"]
EXPOSE 7860

# Ready: the database (and Redis, when set) answer and no model of its own failed to load; a model still loading is
# ready (it serves once loaded). /api/health/live only says the server runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:7860/api/health/ready"]

CMD ["python", "app.py"]
