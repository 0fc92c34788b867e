"""Plain OCI data: the runtime spec (config.json, state). Parsing and validation, no I/O.

Image parts live in their own modules, imported only by those who need them (this
package is imported on every runtime CLI call): ``digest``, ``mediatypes``,
``reference``, ``platform``, ``image_spec``.
"""

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
