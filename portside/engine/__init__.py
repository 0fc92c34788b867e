"""The daemon's core: containers, images, volumes, events, the state store, the
container monitor. A plain Python API (no HTTP); ``portside.api`` translates the
Docker Engine API onto it."""
