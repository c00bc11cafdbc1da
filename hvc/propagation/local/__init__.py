"""The local kernel (fast and exact, docs/local_kernel.md); the interface is :class:`LocalKernel`."""

from hvc.propagation.local.kernel import LocalKernel

__all__ = ["LocalKernel"]
