#!/usr/bin/env bash
# Alias of scripts/run_metrics (the name the paper's repository uses).
exec bash "$(dirname "$0")/run_metrics" "$@"
