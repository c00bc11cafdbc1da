#!/usr/bin/env bash
# The paper's static-image training: ResNet-18, 256x256, batch 128, 20 epochs, Adam 1e-3,
# on data/Static/JPEGImages/{COCO,PASCAL,MSRA10K} (configs/train_img.yaml).
# Extra arguments are passed on: key=value overrides, --resume auto.
#   bash scripts/run_train_img.sh data.roots=[data/Static/JPEGImages/COCO] --resume auto
#   NPROC=4 bash scripts/run_train_img.sh          # 4 GPUs, global batch still 128
exec bash "$(dirname "$0")/_train.sh" configs/train_img.yaml "$@"
