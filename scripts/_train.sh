#!/usr/bin/env bash
# Shared launcher of run_train_img.sh / run_train_vid.sh:
#   bash scripts/_train.sh CONFIG [train.py arguments]
# One process by default; NPROC=N starts N processes with torchrun (DDP), run by the same Python.
# Environment (scripts/_env.sh): PYTHON (default .venv/bin/python when it exists).
# Exit codes: train.py's (docs/failure.md); under torchrun, the launcher's.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_env.sh
config=$1
shift
if [ "${NPROC:-1}" -gt 1 ]; then
  exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" train.py --config "$config" "$@"
fi
exec "$PYTHON" train.py --config "$config" "$@"
