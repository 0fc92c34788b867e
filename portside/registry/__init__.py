"""The registry server (``portside registry serve``): the OCI distribution API over a
content-addressed blob store, with accounts, teams, tokens, webhooks and a web UI.
A process of its own; it shares only ``portside.oci`` and the image store's formats
with the daemon. See docs/registry.md."""
