"""The local kernel (fast and exact, docs/local_kernel.md): :class:`hvc.propagation.local.kernel.LocalKernel`."""
