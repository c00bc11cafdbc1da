#!/usr/bin/env bash
# Label propagation of one model on one benchmark.
#   bash scripts/run_test.sh <model> <dataset> [extra test.py arguments]
# model: hvc, mocov1, imagenet18, imagenet50, random18
# dataset: davis16, davis17, davis17dev, ytvos (2018), ytvos19, jhmdb (pose), vip (parts), vost
# Uses configs/test_<dataset>.yaml and writes results/<model>/<dataset>/ (with --merge-model M:
# results/<model>+M/<dataset>/), where scripts/run_metrics reads them.
# Environment (scripts/_env.sh): DATA_ROOT (default data), RESULTS_ROOT (default results),
# PYTHON (default .venv/bin/python when it exists); relative paths are taken from the repository root.
# Exit codes: test.py's (docs/failure.md); 2 for a bad command line here.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "error: command line: usage: bash scripts/run_test.sh <model> <dataset> [test.py arguments]" >&2
    exit 2
fi
model=$1
dataset=$2
shift 2

cd "$(dirname "$0")/.."
. scripts/_env.sh
if ! root=$(dataset_root "$dataset"); then
    echo "error: $dataset: unknown dataset (davis16, davis17, davis17dev, ytvos, ytvos19, jhmdb, vip, vost)" >&2
    exit 2
fi
exec "$PYTHON" test.py --config "configs/test_$dataset.yaml" --model "$model" \
    data.root="$root" run.results_root="${RESULTS_ROOT:-results}" "$@"
