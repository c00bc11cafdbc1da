"""The jobs' command lines: ``train``, ``test`` (propagation on a benchmark) and ``eval_metrics``, each with
``main(argv) -> exit code`` and ``command()`` (docs/design.md, "Entry points")."""
