#!/usr/bin/env bash
# Shared launcher of run_train_img.sh / run_train_vid.sh:
#   bash scripts/_train.sh CONFIG [train.py arguments]
# One process by default; NPROC=N starts N processes with torchrun (DDP).
# Exit codes: train.py's (README, "Failure behaviour"); under torchrun, the launcher's.
set -euo pipefail
cd "$(dirname "$0")/.."
config=$1
shift
if [ "${NPROC:-1}" -gt 1 ]; then
  exec torchrun --standalone --nproc_per_node "$NPROC" train.py --config "$config" "$@"
fi
exec "${PYTHON:-python}" train.py --config "$config" "$@"
