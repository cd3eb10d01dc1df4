# The dashboard on the CPU. Requirements are installed before the code is copied so that code
# changes reuse the (large) dependency layer.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HOME=/models VAD_DATA_DIR=/data

RUN apt-get update && apt-get install -y --no-install-recommends curl libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
# CPU wheels of the pinned torch/torchvision, then the rest.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
    && pip install -r requirements.txt

RUN useradd --create-home --uid 1000 vad && mkdir -p /data /models && chown vad:vad /data /models
COPY --chown=vad:vad . .
USER vad

VOLUME ["/data", "/models"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD curl -fsS http://localhost:8501/_stcore/health || exit 1
CMD ["streamlit", "run", "app/main.py", "--server.port=8501", "--server.address=0.0.0.0"]
