"""The jobs' command lines ``train``, ``test``, ``eval_metrics``: ``main(argv) -> exit code``, ``command()`` each."""
