"""Embedded demo: synthetic video and the end-to-end `make demo` pipeline."""
