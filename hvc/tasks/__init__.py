"""What differs between the benchmarks of ``test.py`` (docs/tasks.md): their clips, writers and the pose codec."""
