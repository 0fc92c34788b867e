"""The OCI runtime: an OCI bundle in, an isolated and limited process out.

:class:`~portside.runtime.container.Runtime` is the lifecycle API; the
runc-compatible ``portside-runtime`` CLI lives in :mod:`portside.runtime.cli`.
Imports are lazy so that each CLI call starts fast.
"""

__all__: list[str] = []
