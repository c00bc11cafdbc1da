"""What differs between the benchmarks of ``test.py`` (docs/tasks.md): pose (joint maps <-> keypoints), clips."""
