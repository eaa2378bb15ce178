# Atelier on an NVIDIA GPU box:
#   docker build -t atelier .
#   docker run --gpus all -p 7860:7860 -v atelier-data:/data -v atelier-hf:/hf-cache atelier
# The torch wheel pinned in requirements.txt ships its own CUDA libraries; the CUDA runtime base
# supplies the driver hooks of the NVIDIA container toolkit and a matching userland.
# Stage 1: the React client, built with Node; only its static files go into the image.
FROM node:20-bookworm-slim AS client
WORKDIR /client
COPY react_frontend/package.json react_frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY react_frontend/ ./
RUN npm run build

# Stage 2: the app.
FROM nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04

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

COPY . .
COPY --from=client /client/dist /app/react_frontend/dist

# A non-root user owns the data dir and the Hugging Face cache; both are volumes so that images,
# history and downloaded weights survive a new container.
# data/tmp exists in the image so that a volume mounted there (each replica's own caches, docker-compose.yml's
# scale profile) starts owned by the atelier user, as Docker copies a mount point's ownership into a new volume.
RUN useradd --create-home --uid 10001 atelier \
    && mkdir -p /data/tmp /hf-cache \
    && chown -R atelier:atelier /data /hf-cache
USER 10001

ENV ATELIER_HOST=0.0.0.0 \
    ATELIER_PORT=7860 \
    ATELIER_DATA_DIR=/data \
    HF_HOME=/hf-cache \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1
VOLUME ["/data", "/hf-cache"]
EXPOSE 7860

# /api/health answers 200 as soon as the server runs, whatever the models are doing.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:7860/api/health"]

CMD ["python", "app.py"]
