"""Score a folder of predictions (DAVIS J&F, JHMDB PCK, VIP mIoU, VOST J).

Usage and options: ``python eval_metrics.py --help``. The command line lives in hvc/entry/eval_metrics.py;
this file stays at the top level so that ``python eval_metrics.py ...`` (and torchrun) works from a
checkout. An installed package has the same command as ``hvc-eval-metrics`` (pyproject.toml).
"""

import sys

from hvc.entry.eval_metrics import command

if __name__ == "__main__":
    sys.exit(command())
