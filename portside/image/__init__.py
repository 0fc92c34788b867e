"""The image store: content-addressed blobs, layers, snapshots and images.

Import the modules you need (``portside.image.content`` for the blob store); this
package imports nothing itself, so a caller pays only for what it uses.
"""

__all__ = []
