#!/usr/bin/env bash
# Issue 11's GPU figures in one run of the device tool (docs/benchmarks.md, "GPU machine").
#
# The GPU machine has no network and none of open_clip, qdrant-edge, imagehash, pydantic, minio...
# Prepare here, from the project root (both folders are ignored by git):
#   ../shared/device/fetch-wheels.sh .whl
#   mkdir -p .photos && ls ../shared/datasets/imagenet-sample/images/*.JPEG | head -48 | xargs cp -t .photos
# then run there, with carry [".whl", ".photos"] and a timeout of about 540 s:
#   bash bench/gpu_ingest.sh
# It writes the machine's description and the bench's report to $OUT. FILES, DEVICE, PRECISIONS,
# PYTHON and WHEELS override the defaults (a dry run here, where the Python 3.12 wheels do not
# install: DEVICE=cpu PRECISIONS=fp32 FILES=64 PYTHON=.venv/bin/python WHEELS=none).
set -euo pipefail
out=${OUT:-/tmp/gpu-ingest}
python=${PYTHON:-python3}
mkdir -p "$out"
wheels=${WHEELS:-.whl}
if [ -d "$wheels" ]; then
  "$python" -m pip install -q --no-index --no-deps --target /tmp/site "$wheels"/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  echo "cores: $(nproc)"
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} | tee "$out/machine.txt"
"$python" -m bench.ingest .photos --files "${FILES:-3000}" --device "${DEVICE:-cuda}" \
  --precisions "${PRECISIONS:-fp32,fp16}" --workers 1,default 2>&1 | tee "$out/gpu_ingest.txt"
