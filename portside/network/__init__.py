"""Container networking building blocks (issue 5); the engine wires them together.

- :mod:`portside.network.ipam`: subnet pools and per-network address allocation (pure).
- :mod:`portside.network.nft`: Portside's nftables table (NAT, published ports,
  isolation) built from a declarative model and replaced atomically through libnftables.
- :mod:`portside.network.netlink`: bridges, veth pairs and in-namespace configuration
  through pyroute2 (imported lazily: it costs ~250 ms).

Import the submodule you need; this package imports nothing itself.
"""

__all__ = ["ipam", "netlink", "nft"]
