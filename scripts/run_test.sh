#!/usr/bin/env bash
# Label propagation of one model on one benchmark.
#   bash scripts/run_test.sh <model> <dataset> [extra test.py arguments]
# model: hvc, mocov1, imagenet18, imagenet50, random18
# dataset: davis16, davis17, davis17dev, ytvos (2018), ytvos19, jhmdb (pose), vip (parts), vost
# Uses configs/test_<dataset>.yaml and writes results/<model>/<dataset>/ (with --merge-model M:
# results/<model>+M/<dataset>/), where scripts/run_metrics reads them.
# Environment: DATA_ROOT (default data), JHMDB_ROOT / VIP_ROOT / VOST_ROOT (default
# $DATA_ROOT/JHMDB, /VIP, /VOST; scripts/run_metrics reads the same variables), RESULTS_ROOT
# (default results), PYTHON (default python); relative paths are taken from the repository root.
# Exit codes: test.py's (README, "Failure behaviour"); 2 for a bad command line here.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "error: command line: usage: bash scripts/run_test.sh <model> <dataset> [test.py arguments]" >&2
    exit 2
fi
model=$1
dataset=$2
shift 2
data=${DATA_ROOT:-data}
case "$dataset" in
    davis16|davis17|davis17dev) root=$data/DAVIS ;;
    ytvos) root=$data/YTB/2018 ;;
    ytvos19) root=$data/YTB/2019 ;;
    jhmdb) root=${JHMDB_ROOT:-$data/JHMDB} ;;
    vip) root=${VIP_ROOT:-$data/VIP} ;;
    vost) root=${VOST_ROOT:-$data/VOST} ;;
    *) echo "error: $dataset: unknown dataset (davis16, davis17, davis17dev, ytvos, ytvos19, jhmdb, vip, vost)" >&2
       exit 2 ;;
esac

cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" test.py --config "configs/test_$dataset.yaml" --model "$model" \
    data.root="$root" run.results_root="${RESULTS_ROOT:-results}" "$@"
