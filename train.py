"""Train HVC.

Usage and options: ``python train.py --help``. The command line lives in hvc/entry/train.py;
this file stays at the top level so that ``python train.py ...`` (and torchrun) works from a
checkout. An installed package has the same command as ``hvc-train`` (pyproject.toml).
"""

import sys

from hvc.entry.train import command

if __name__ == "__main__":
    sys.exit(command())
