"""Label codecs of the propagation tasks beyond VOS (docs/tasks.md): what a label is before
propagation and how a propagated soft map is read back."""
