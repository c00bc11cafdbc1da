#!/usr/bin/env bash
# Video training on YouTube-VOS 2018 train frames (data/YTB/2018/train_all_frames/JPEGImages):
# same model, loss and optimisation as the static run (configs/train_vid.yaml).
# Extra arguments are passed on: key=value overrides, --resume auto.
#   NPROC=4 bash scripts/run_train_vid.sh data.max_gap=5
exec bash "$(dirname "$0")/_train.sh" configs/train_vid.yaml "$@"
