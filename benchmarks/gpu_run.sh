#!/usr/bin/env bash
# The GPU measurements of the README, in one go (about 6 minutes on one H100/H200 with 16 cores):
#   bash benchmarks/gpu_run.sh SOURCE_IMAGES OUT_FOLDER [IMAGES]
# SOURCE_IMAGES: a folder with real H&E img_* files (e.g. ../shared/data/glas15); IMAGES large PNGs are built from
# them (default 1600), then pipeline.bench (Phikon architecture, fp16 = the CUDA default, and fp32 for drift;
# model-only, end-to-end from PNG files, the data side alone) and benchmarks/gpu_probe.py (batch sizes, compiled,
# writer processes, and extraction on the GPU checked tile by tile against fp32 on the CPU).
set -euo pipefail
source_images=$1 out=$2 images=${3:-1600}
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/.." && pwd)
data=${DATA:-/tmp/png-data}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$python" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
[ -d "$data/train_data" ] || "$python" "$here/benchmarks/make_png_data.py" --source "$source_images" --out "$data" --images "$images"
"$python" -m pipeline.bench --data "$data" --models vit-b16 --precisions auto,fp32 --model-only-precisions fp32 \
  --images "vit-b16=$images" --naive-tiles vit-b16=${NAIVE:-0} --memory "" --data-side-images "$images" \
  --f1-precisions "" --device "${DEVICE:-cuda}" --compile off --model-only-tiles ${MODEL_ONLY_TILES:-10000} \
  --json "$out/bench.json"
"$python" "$here/benchmarks/gpu_probe.py" --device "${DEVICE:-cuda}" --data "$data" --check-images 8 \
  --compiled "${COMPILED:-128}" --json "$out/probe.json" ${PROBE_ARGS:-}
