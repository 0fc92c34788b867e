"""Thin, typed wrappers over the Linux syscalls Python lacks.

One place for ctypes (:mod:`portside.linux._libc`); the namespace and mount calls go
through the :class:`~portside.linux.kernel.Kernel` facade, which has a recording fake.
"""

__all__: list[str] = []
