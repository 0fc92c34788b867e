"""Plain OCI data: the runtime spec (config.json, state). Parsing and validation, no I/O."""

from portside.oci._json import Record, SpecError
from portside.oci.runtime_spec import (
    LinuxResources,
    Spec,
    State,
    load_spec,
    parse_resources,
    parse_spec,
)

__all__ = [
    "LinuxResources",
    "Record",
    "Spec",
    "SpecError",
    "State",
    "load_spec",
    "parse_resources",
    "parse_spec",
]
