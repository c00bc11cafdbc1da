#!/usr/bin/env bash
# Video training on YouTube-VOS 2018 train frames (data/YTB/2018/train_all_frames/JPEGImages):
# same model, loss and optimisation as the static run (configs/train_vid.yaml).
# Extra arguments are passed on: key=value overrides, --resume auto.
#   NPROC=4 bash scripts/run_train_vid.sh data.max_gap=5
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if [ "${NPROC:-1}" -gt 1 ]; then
  exec torchrun --standalone --nproc_per_node "$NPROC" train.py --config configs/train_vid.yaml "$@"
fi
exec "$PYTHON" train.py --config configs/train_vid.yaml "$@"
