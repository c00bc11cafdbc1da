"""Label propagation on a benchmark (DAVIS, YouTube-VOS, VOST, JHMDB, VIP) into a results folder.

Usage and options: ``python test.py --help``. The command line lives in hvc/entry/test.py;
this file stays at the top level so that ``python test.py ...`` (and torchrun) works from a
checkout. An installed package has the same command as ``hvc-test`` (pyproject.toml).
"""

import sys

from hvc.entry.test import command

if __name__ == "__main__":
    sys.exit(command())
