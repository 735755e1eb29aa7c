#!/usr/bin/env bash
# GPU check, under 5 minutes on one CUDA GPU: the throughput benchmark on CUDA (quick settings,
# full batch 64 for every family), then one short training run on CUDA, then the table again.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      (default OUT_DIR: gpu-check/)
#
# Needs the project installed with a CUDA build of torch (pip install torch; pip install -e .).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out"

python - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device is visible to torch " + torch.__version__)
print("gpu_check:", torch.cuda.get_device_name(0), "torch", torch.__version__,
      "bf16" if torch.cuda.is_bf16_supported() else "no bf16")
EOF

# 1. throughput on CUDA: eager fp32 vs the default path, interleaved; batch 64 for all families
timeout 170 python benchmarks/throughput.py --device cuda --quick --batch 64 --steps 5 --repeats 3 \
    --json "$out/throughput-cuda.json" | tee "$out/throughput-cuda.txt"

# 2. one short training run on CUDA (default path: bf16 matmuls where supported, prefetching)
rm -rf "$out/run"
timeout 100 python -m grouping run --device cuda --max-minutes 1 --epochs 3 \
    --train-size 20000 --valid-size 1000 --test-size 1000 --out "$out/run" --json \
    > "$out/run-summary.json"
python - "$out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
s = json.loads((out / "run-summary.json").read_text())
print(f"\ntraining run on {s['device']}: {s['epochs']} epochs, {s['train_images_per_s']:.0f} img/s, "
      f"test AMI {s['test']['ami']:.3f} ± {s['test']['ami_std']:.3f}, wall {s['wall_s']:.0f} s")
text = (out / "throughput-cuda.txt").read_text()
print(text[text.find("device "):])
EOF
