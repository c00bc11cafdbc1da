"""What differs between the benchmarks of ``test.py`` (docs/tasks.md): the labels a clip starts
from (pose: joint maps), where its files go (clips) and how they are written (writers)."""
