"""The local kernel (fast and exact) and its parts: index tables, tile-block storage, the tiled
product and the masked small-map product. The interface is :class:`LocalKernel`."""

from hvc.propagation.local.kernel import LocalKernel

__all__ = ["LocalKernel"]
