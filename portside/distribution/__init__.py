"""The registry client: references to endpoints, credentials, the token flow, the
OCI distribution protocol, and pull and push between a registry and the image store."""
