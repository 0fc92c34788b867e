"""The ``portside`` command line (docker's verbs over the Docker Engine API)."""
