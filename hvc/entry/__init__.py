"""The jobs' command lines: ``train``, ``test`` (propagation on a benchmark) and ``eval_metrics``.

Each module has ``main(argv) -> exit code`` (wrapped by :func:`hvc.errors.entry_point`). They
run as ``python train.py`` / ``test.py`` / ``eval_metrics.py`` (thin files at the repository
root), ``python -m hvc.entry.<job>``, or the installed commands ``hvc-train``, ``hvc-test``,
``hvc-eval-metrics`` (pyproject.toml).
"""
