"""Output as docker prints it: sizes, "3 seconds ago", aligned tables, and the
per-row contexts ``--format`` templates see (``{{.ID}}``, ``{{.Status}}``...)."""

from __future__ import annotations

import time

from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = [
    "ContainerRow",
    "ImageRow",
    "bytes_size",
    "ellipsis",
    "human_duration",
    "human_size",
    "parse_time",
    "render",
    "tabwrite",
]

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _go_g(value: float, precision: int) -> str:
    text = f"%.{precision}g" % value
    if "e" in text:
        mant, _, exp = text.partition("e")
        sign = exp[0]
        digits = exp[1:].lstrip("0").rjust(2, "0")
        text = f"{mant}e{sign}{digits}"
    return text


def human_size(size: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision: 4260000 → "4.26MB" (decimal units)."""
    size = float(size)
    i = 0
    while size >= 1000.0 and i < len(_DECIMAL) - 1:
        size /= 1000.0
        i += 1
    return f"{_go_g(size, precision)}{_DECIMAL[i]}"


def bytes_size(size: float) -> str:
    """go-units BytesSize: 1536 → "1.5KiB" (binary units, 4 significant digits)."""
    size = float(size)
    i = 0
    while size >= 1024.0 and i < len(_BINARY) - 1:
        size /= 1024.0
        i += 1
    return f"{_go_g(size, 4)}{_BINARY[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "Less than a second", "About a minute", "3 days"."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def since(epoch: float, now: float | None = None) -> str:
    """``Created`` epoch → "5 minutes ago"."""
    now = time.time() if now is None else now
    return human_duration(now - epoch) + " ago"


def parse_time(text: str) -> float:
    """RFC 3339 (nanoseconds allowed) → epoch seconds; 0.0 for the zero time."""
    if not text or text.startswith("0001-01-01"):
        return 0.0
    from datetime import datetime

    head, dot, rest = text.partition(".")
    zone = ""
    if dot:
        digits = ""
        for pos, char in enumerate(rest):
            if not is_number(char):
                zone = rest[pos:]
                break
            digits += char
        frac = "." + (digits[:6] or "0")
    else:
        frac = ""
        for sep in ("Z", "+", "-"):
            pos = head.find(sep, 11)
            if pos > 0:
                head, zone = head[:pos], head[pos:]
                break
    zone = "+00:00" if zone in ("Z", "z", "") else zone
    return datetime.fromisoformat(head + frac + zone).timestamp()


def container_status(state: dict, now: float | None = None) -> str:
    """docker's State → "Up 3 seconds", "Exited (0) 2 minutes ago", "Created"..."""
    now = time.time() if now is None else now
    status = state.get("Status", "")
    started = parse_time(state.get("StartedAt", ""))
    finished = parse_time(state.get("FinishedAt", ""))
    if status == "running" or state.get("Running"):
        if state.get("Paused"):
            return f"Up {human_duration(now - started)} (Paused)"
        health = (state.get("Health") or {}).get("Status")
        extra = ""
        if health == "starting":
            extra = " (health: starting)"
        elif health in ("healthy", "unhealthy"):
            extra = f" ({health})"
        if state.get("Restarting"):
            return f"Restarting ({state.get('ExitCode', 0)}) {since(finished, now)}"
        return f"Up {human_duration(now - started)}{extra}"
    if status == "restarting":
        return f"Restarting ({state.get('ExitCode', 0)}) {since(finished, now)}"
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    if status == "created" or not finished:
        return "Created"
    return f"Exited ({state.get('ExitCode', 0)}) {since(finished, now)}"


def ellipsis(text: str, width: int) -> str:
    """docker's formatter.Ellipsis: cut to ``width`` characters ending in "…"."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    return text[: width - 1] + "…"


def truncate_id(ident: str) -> str:
    ident = ident.split(":", 1)[1] if ident.startswith("sha256:") else ident
    return ident[:12]


def tabwrite(lines: list[str], minwidth: int = 10, padding: int = 3) -> str:
    """Go's tabwriter (minwidth, tabwidth 1, padding, ' ', 0) over tab-separated lines:
    every tab-terminated cell padded to its column's width."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in rows:
        for col, cell in enumerate(row[:-1]):
            widths[col] = max(widths.get(col, minwidth), len(cell) + padding)
    out = []
    for row in rows:
        cells = [cell.ljust(widths[col]) for col, cell in enumerate(row[:-1])]
        out.append("".join(cells) + row[-1])
    return "\n".join(out) + ("\n" if out else "")


# -- rows ----------------------------------------------------------------------


class _Row:
    HEADERS: dict[str, str] = {}
    FIELDS: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {name: getattr(self, name)() for name in self.FIELDS}


class _HeaderRow:
    """Answers every field with its column title (the header line of a table)."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        title = self._headers.get(name, name.upper())
        return lambda *args: title


def _labels(labels: dict | None) -> str:
    return ",".join(f"{k}={v}" for k, v in (labels or {}).items())


def display_ports(ports: list[dict] | None) -> str:
    """``[{"IP","PrivatePort","PublicPort","Type"}]`` → "0.0.0.0:8080->80/tcp, 443/tcp"."""
    out = []
    for port in sorted(
        ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""), p.get("IP", ""))
    ):
        private = f"{port.get('PrivatePort')}/{port.get('Type', 'tcp')}"
        if port.get("PublicPort"):
            ip = port.get("IP") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            out.append(f"{host}:{port['PublicPort']}->{private}")
        else:
            out.append(private)
    return ", ".join(out)


class ContainerRow(_Row):
    """One ``docker ps`` row (GET /containers/json item)."""

    HEADERS = {
        "ID": "CONTAINER ID",
        "Image": "IMAGE",
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED",
        "Ports": "PORTS",
        "State": "STATE",
        "Status": "STATUS",
        "Size": "SIZE",
        "Names": "NAMES",
        "Labels": "LABELS",
        "Label": "LABEL",
        "Mounts": "MOUNTS",
        "LocalVolumes": "LOCAL VOLUMES",
        "Networks": "NETWORKS",
    }
    FIELDS = (
        "Command",
        "CreatedAt",
        "ID",
        "Image",
        "Labels",
        "LocalVolumes",
        "Mounts",
        "Names",
        "Networks",
        "Ports",
        "RunningFor",
        "Size",
        "State",
        "Status",
    )

    def __init__(self, c: dict, *, trunc: bool = True, now: float | None = None) -> None:
        self.c = c
        self.trunc = trunc
        self.now = now

    def ID(self) -> str:
        return truncate_id(self.c.get("Id", "")) if self.trunc else self.c.get("Id", "")

    def Names(self) -> str:
        names = [n[1:] if n.startswith("/") else n for n in self.c.get("Names") or []]
        if self.trunc:
            for name in names:
                if "/" not in name:
                    names = [name]
                    break
        return ",".join(names)

    def Image(self) -> str:
        image = self.c.get("Image", "") or "<no image>"
        if self.trunc:
            if image.startswith("sha256:") or (len(image) == 64 and _is_hex(image)):
                return truncate_id(image)
            image = image.split("@", 1)[0]
        return image

    def Command(self) -> str:
        import json

        command = self.c.get("Command", "")
        if self.trunc:
            command = ellipsis(command, 20)
        return json.dumps(command, ensure_ascii=False)

    def CreatedAt(self) -> str:
        stamp = time.gmtime(self.c.get("Created", 0))
        return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", stamp)

    def RunningFor(self) -> str:
        return since(self.c.get("Created", 0), self.now)

    def Ports(self) -> str:
        return display_ports(self.c.get("Ports"))

    def State(self) -> str:
        return self.c.get("State", "")

    def Status(self) -> str:
        return self.c.get("Status", "")

    def Size(self) -> str:
        rw = human_size(self.c.get("SizeRw") or 0)
        root = self.c.get("SizeRootFs") or 0
        return f"{rw} (virtual {human_size(root)})" if root > 0 else rw

    def Labels(self) -> str:
        return _labels(self.c.get("Labels"))

    def Label(self, name: str) -> str:
        return (self.c.get("Labels") or {}).get(name, "")

    def Mounts(self) -> str:
        out = []
        for mount in self.c.get("Mounts") or []:
            name = mount.get("Name") or mount.get("Source", "")
            out.append(ellipsis(name, 15) if self.trunc else name)
        return ",".join(out)

    def LocalVolumes(self) -> str:
        mounts = self.c.get("Mounts") or []
        return str(sum(1 for m in mounts if m.get("Driver") == "local"))

    def Networks(self) -> str:
        networks = (self.c.get("NetworkSettings") or {}).get("Networks") or {}
        return ",".join(sorted(networks))


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


class ImageRow(_Row):
    """One ``docker images`` row: an image under one repository:tag."""

    HEADERS = {
        "Repository": "REPOSITORY",
        "Tag": "TAG",
        "Digest": "DIGEST",
        "ID": "IMAGE ID",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "Size": "SIZE",
        "Containers": "CONTAINERS",
        "VirtualSize": "VIRTUAL SIZE",
        "SharedSize": "SHARED SIZE",
        "UniqueSize": "UNIQUE SIZE",
    }
    FIELDS = (
        "Containers",
        "CreatedAt",
        "CreatedSince",
        "Digest",
        "ID",
        "Repository",
        "SharedSize",
        "Size",
        "Tag",
        "UniqueSize",
        "VirtualSize",
    )

    def __init__(
        self, image: dict, repo: str, tag: str, digest: str, *, trunc: bool = True
    ) -> None:
        self.image = image
        self.repo = repo
        self.tag = tag
        self.digest = digest
        self.trunc = trunc

    def Repository(self) -> str:
        return self.repo

    def Tag(self) -> str:
        return self.tag

    def Digest(self) -> str:
        return self.digest

    def ID(self) -> str:
        ident = self.image.get("Id", "")
        return truncate_id(ident) if self.trunc else ident

    def CreatedSince(self) -> str:
        created = self.image.get("Created", 0)
        return since(created) if created else "N/A"

    def CreatedAt(self) -> str:
        return time.strftime(
            "%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(self.image.get("Created", 0))
        )

    def Size(self) -> str:
        return human_size(self.image.get("Size", 0))

    def VirtualSize(self) -> str:
        return human_size(self.image.get("VirtualSize", self.image.get("Size", 0)))

    def SharedSize(self) -> str:
        shared = self.image.get("SharedSize", -1)
        return "N/A" if shared is None or shared < 0 else human_size(shared)

    def UniqueSize(self) -> str:
        shared = self.image.get("SharedSize", -1)
        if shared is None or shared < 0:
            return "N/A"
        return human_size(self.image.get("Size", 0) - shared)

    def Containers(self) -> str:
        count = self.image.get("Containers", -1)
        return "N/A" if count is None or count < 0 else str(count)


def image_rows(images: list[dict], *, digests: bool, trunc: bool) -> list[ImageRow]:
    """One row per repository:tag (and per digest with ``digests``), "<none>" for
    dangling images, as docker does."""
    rows: list[ImageRow] = []
    for image in images:
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        repo_digests = [d for d in image.get("RepoDigests") or [] if d != "<none>@<none>"]
        by_repo: dict[str, list[str]] = {}
        for item in repo_digests:
            repo, _, digest = item.partition("@")
            by_repo.setdefault(repo, []).append(digest)
        if not tags and not repo_digests:
            rows.append(ImageRow(image, "<none>", "<none>", "<none>", trunc=trunc))
            continue
        seen = set()
        for ref in tags:
            repo, tag = _split_tag(ref)
            seen.add(repo)
            found = by_repo.get(repo) or ["<none>"]
            for digest in found if digests else found[:1]:
                rows.append(ImageRow(image, repo, tag, digest, trunc=trunc))
        for repo, found in by_repo.items():
            if repo not in seen:
                for digest in found if digests else found[:1]:
                    rows.append(ImageRow(image, repo, "<none>", digest, trunc=trunc))
    return rows


def _split_tag(ref: str) -> tuple[str, str]:
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "<none>"


class MapRow(_Row):
    """A row over a plain dict (volumes, history, df): fields are the keys."""

    def __init__(self, values: dict, headers: dict[str, str]) -> None:
        self.values = values
        self.HEADERS = headers
        self.FIELDS = tuple(values)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return lambda *args: values[name]
        raise AttributeError(name)

    def to_json(self) -> dict:
        return dict(self.values)


# -- rendering -----------------------------------------------------------------


def render(
    rows: list[Any],
    fmt: str,
    out: TextIO,
    *,
    minwidth: int = 10,
    headers: dict[str, str] | None = None,
) -> None:
    """Write ``rows`` with a docker format string: ``table ...`` (header + aligned
    columns), ``json`` (one JSON object per line) or a plain template per row.
    ``headers``: the column titles when there may be no row to take them from."""
    from portside.cli.template import Template, to_json

    if fmt == "json":
        for row in rows:
            out.write(to_json(row) + "\n")
        return
    table = fmt.startswith("table")
    body = fmt[len("table") :] if table else fmt
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    template = Template(body)
    lines: list[str] = []
    if table:
        if headers is None:
            headers = rows[0].HEADERS if rows else _headers_for(fmt)
        lines.append(template.execute(_HeaderRow(headers)))
    for row in rows:
        lines.append(template.execute(row))
    if table:
        out.write(tabwrite(lines, minwidth=minwidth))
    else:
        for line in lines:
            out.write(line + "\n")


_ALL_HEADERS: dict[str, str] = {}


def _headers_for(fmt: str) -> dict[str, str]:
    if not _ALL_HEADERS:
        _ALL_HEADERS.update(ImageRow.HEADERS)
        _ALL_HEADERS.update(ContainerRow.HEADERS)
    return _ALL_HEADERS
