"""Container names and references: Docker's random ``adjective_surname`` names,
name validation, and resolving a reference (full ID, name or unique ID prefix)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable

from portside.errors import Conflict, InvalidArgument, NotFound

__all__ = [
    "ADJECTIVES",
    "SURNAMES",
    "AmbiguousReference",
    "ContainerNotFound",
    "NameConflict",
    "random_name",
    "resolve",
    "validate_name",
]

# fmt: off
ADJECTIVES = (
    "admiring", "adoring", "agitated", "amazing", "angry", "awesome", "blissful", "bold",
    "brave", "busy", "charming", "clever", "compassionate", "competent", "cool", "dazzling",
    "determined", "eager", "ecstatic", "elastic", "elegant", "epic", "exciting", "fervent",
    "festive", "focused", "friendly", "funny", "gallant", "gifted", "goofy", "gracious",
    "happy", "hopeful", "jolly", "keen", "kind", "laughing", "lucid", "modest", "nifty",
    "optimistic", "peaceful", "quirky", "relaxed", "serene", "sharp", "stoic", "vibrant",
    "wizardly", "zealous",
)

SURNAMES = (
    "agnesi", "albattani", "archimedes", "babbage", "bardeen", "bell", "bohr", "boole",
    "brahmagupta", "curie", "darwin", "dijkstra", "einstein", "euclid", "euler", "faraday",
    "fermat", "feynman", "galileo", "gauss", "goldberg", "hamilton", "hawking", "hopper",
    "hypatia", "johnson", "kepler", "knuth", "lamport", "lovelace", "maxwell", "mccarthy",
    "meitner", "newton", "noether", "pascal", "ritchie", "shannon", "thompson", "turing",
    "wozniak", "yalow",
)
# fmt: on

_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class ContainerNotFound(NotFound):
    """No container has that ID, name or ID prefix."""


class AmbiguousReference(InvalidArgument):
    """An ID prefix matches several containers."""


class NameConflict(Conflict):
    """The name is taken by another container (Docker's message)."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(
            f'Conflict. The container name "/{name}" is already in use by container'
            f' "{holder}". You have to remove (or rename) that container to be able to'
            " reuse that name."
        )


def validate_name(name: str) -> str:
    """``name`` without its leading "/"; InvalidArgument with Docker's message if invalid."""
    if not _NAME.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name.lstrip("/")


def random_name(taken: Callable[[str], bool], rng: random.Random | None = None) -> str:
    """A free ``adjective_surname`` (with a digit appended after ten collisions, as Docker)."""
    rng = rng or random.SystemRandom()
    for attempt in range(1000):
        name = f"{rng.choice(ADJECTIVES)}_{rng.choice(SURNAMES)}"
        if name == "boring_wozniak":  # Steve Wozniak is not boring (Docker's rule)
            continue
        if attempt >= 10:
            name += str(rng.randint(0, 9 if attempt < 100 else 99999))
        if not taken(name):
            return name
    raise Conflict("no free random container name")


def resolve(ref: str, ids: Iterable[str], names: dict[str, str]) -> str:
    """The ID of ``ref``: a full ID, then a name (with or without "/"), then a unique ID
    prefix. ``names`` maps name → ID."""
    if not ref:
        raise ContainerNotFound("No such container: ")
    id_set = ids if isinstance(ids, (set, frozenset, dict)) else set(ids)
    if ref in id_set:
        return ref
    name = ref[1:] if ref.startswith("/") else ref
    if name in names:
        return names[name]
    if all(ch in "0123456789abcdef" for ch in ref):
        matches = [cid for cid in id_set if cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise AmbiguousReference(f"multiple IDs found with provided prefix: {ref}")
    raise ContainerNotFound(f"No such container: {ref}")
