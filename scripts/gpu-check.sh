#!/usr/bin/env bash
# The CUDA checks, on a machine with one GPU: the tests marked `cuda` (mixed-precision fine-tune
# steps, gradient checkpointing, SDPA vs default attention, fp16 batched generation, DenseNet-121
# under autocast), then benchmarks/gpu.py. About 5 minutes on one data-centre GPU; each part has
# its own time limit so the whole stays under 10. Figures go to runs/gpu-check.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu-check: torch.cuda.is_available() is False on this machine; nothing to check" >&2
    echo "gpu-check: (on a CPU machine: $PY -m pytest -m cuda -rs skips them, with the reason;" >&2
    echo "gpu-check:  $PY benchmarks/gpu.py --device cpu --quick runs the benchmark's code paths)" >&2
    exit 1
fi
mkdir -p runs
"$PY" -c 'import torch; print("gpu-check:", torch.cuda.get_device_name(0), "torch", torch.__version__)' \
    | tee runs/gpu-check.txt
timeout 240 "$PY" -m pytest -q -m cuda -rs tests/test_cuda.py 2>&1 | tee -a runs/gpu-check.txt
timeout 300 "$PY" benchmarks/gpu.py --device cuda 2>&1 | grep -v 'it/s\]' | tee -a runs/gpu-check.txt
