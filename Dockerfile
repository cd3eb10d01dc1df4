# The dashboard on the CPU: `docker compose up` (see the README's deployment section).
# Requirements are installed before the code is copied, so a code change rebuilds only the last layers.
FROM python:3.11-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models \
    TORCH_HOME=/models/torch \
    VAD_DATA_DIR=/data \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

# libgomp1: OpenMP runtime for faiss and scikit-learn wheels.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt ./
# The CPU builds of the pinned torch/torchvision first (PyPI's default torch carries CUDA, ~3 GB more);
# requirements.txt pins the same versions, which these satisfy.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
    && pip install -r requirements.txt

# Runs as an unprivileged user; the code stays owned by root (read-only for the app).
RUN useradd --create-home --uid 10001 vad \
    && mkdir -p /data /models \
    && chown vad:vad /data /models
COPY .streamlit .streamlit
COPY assets assets
COPY core core
COPY app app
COPY pages pages
USER vad

# /data: users, cookie key, caches (and images + index when no servers are configured).
# /models: downloaded CLIP weights, kept across restarts and image upgrades.
VOLUME ["/data", "/models"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["python", "app/healthcheck.py"]
CMD ["streamlit", "run", "app/main.py"]
