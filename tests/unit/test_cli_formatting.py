"""docker's output formats: sizes, durations, tables, the Go-template subset."""

from __future__ import annotations

import io
import time

import pytest

from portside.cli.formatting import (
    ContainerRow,
    bytes_size,
    container_status,
    ellipsis,
    human_duration,
    human_size,
    image_rows,
    parse_time,
    render,
    tabwrite,
)
from portside.cli.template import Template, TemplateError

PS_FORMAT = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (4261550, "4.26MB"),
        (1234567890123, "1.23TB"),
        (5_000_000_000, "5GB"),
        (1_500, "1.5kB"),
    ],
)
def test_human_size_is_go_units(size: int, text: str) -> None:
    assert human_size(size) == text


def test_bytes_size_binary() -> None:
    assert bytes_size(1536) == "1.5KiB"
    assert bytes_size(0) == "0B"
    assert bytes_size(7.6 * 2**30) == "7.6GiB"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "Less than a second"),
        (1, "1 second"),
        (3, "3 seconds"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3600, "About an hour"),
        (3 * 3600, "3 hours"),
        (47 * 3600, "47 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_status_strings() -> None:
    now = parse_time("2026-11-28T03:30:19Z")
    running = {"Status": "running", "Running": True, "StartedAt": "2026-11-28T03:30:16.5Z"}
    assert container_status(running, now) == "Up 2 seconds"
    paused = dict(running, Paused=True, StartedAt="2026-11-28T03:29:00Z")
    assert container_status(paused, now) == "Up About a minute (Paused)"
    exited = {"Status": "exited", "ExitCode": 3, "FinishedAt": "2026-11-28T03:20:18.123456789Z"}
    assert container_status(exited, now) == "Exited (3) 10 minutes ago"
    created = {"Status": "created", "FinishedAt": "0001-01-01T00:00:00Z"}
    assert container_status(created, now) == "Created"
    healthy = dict(running, Health={"Status": "healthy"})
    assert container_status(healthy, now) == "Up 2 seconds (healthy)"


def test_parse_time_nanoseconds_and_offsets() -> None:
    assert parse_time("2026-11-28T03:30:19.123456789Z") == pytest.approx(1795836619.123456)
    assert parse_time("2026-11-28T04:30:19+01:00") == parse_time("2026-11-28T03:30:19Z")
    assert parse_time("0001-01-01T00:00:00Z") == 0.0


def test_ellipsis() -> None:
    assert ellipsis("short", 20) == "short"
    assert ellipsis("a" * 25, 20) == "a" * 19 + "…"


def test_tabwriter_like_go() -> None:
    out = tabwrite(["A\tBB\tlast", "CCCCCCCCCCCC\tD\tx"], minwidth=10, padding=3)
    assert out == "A              BB        last\nCCCCCCCCCCCC   D         x\n"


def _container(now: float) -> dict:
    return {
        "Id": "0123456789ab" + "c" * 52,
        "Names": ["/web", "/other/link"],
        "Image": "busybox@sha256:" + "d" * 64,
        "Command": "sh -c 'while true; do sleep 1; done'",
        "Created": now - 3,
        "State": "running",
        "Status": "Up 3 seconds",
        "Ports": [
            {"PrivatePort": 80, "PublicPort": 8080, "IP": "0.0.0.0", "Type": "tcp"},
            {"PrivatePort": 443, "Type": "tcp"},
        ],
        "Labels": {"a": "1"},
        "SizeRw": 1200,
        "SizeRootFs": 4261550,
    }


def test_ps_table_like_docker() -> None:
    now = time.time()
    out = io.StringIO()
    render([ContainerRow(_container(now), now=now)], PS_FORMAT, out)
    lines = out.getvalue().splitlines()
    widths = [15, 10, 25, 16, 15, 32]
    titles = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS"]
    assert lines[0] == "".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)) + "NAMES"
    cells = [
        "0123456789ab",
        "busybox",
        '"sh -c \'while true; …"',
        "3 seconds ago",
        "Up 3 seconds",
        "0.0.0.0:8080->80/tcp, 443/tcp",
    ]
    assert lines[1] == "".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "web"


def test_ps_no_trunc_and_size() -> None:
    now = time.time()
    row = ContainerRow(_container(now), trunc=False, now=now)
    assert row.ID() == "0123456789ab" + "c" * 52
    assert row.Names() == "web,other/link"
    assert row.Command() == "\"sh -c 'while true; do sleep 1; done'\""
    assert row.Image().startswith("busybox@sha256:")
    assert row.Size() == "1.2kB (virtual 4.26MB)"
    assert row.Label("a") == "1"


def test_empty_table_has_the_header() -> None:
    out = io.StringIO()
    render([], PS_FORMAT, out)
    assert out.getvalue() == (
        "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n"
    )


def test_plain_format_and_json() -> None:
    now = time.time()
    rows = [ContainerRow(_container(now), now=now)]
    out = io.StringIO()
    render(rows, "{{.ID}}\\t{{.Names}}", out)
    assert out.getvalue() == "0123456789ab\tweb\n"
    out = io.StringIO()
    render(rows, "json", out)
    assert '"Names":"web"' in out.getvalue()
    out = io.StringIO()
    render(rows, 'table {{.Names}}\t{{.Label "a"}}', out)
    assert out.getvalue() == "NAMES     LABEL\nweb       1\n"


def test_image_rows() -> None:
    images = [
        {
            "Id": "sha256:" + "b" * 64,
            "RepoTags": ["busybox:latest", "me/box:1"],
            "RepoDigests": ["busybox@sha256:" + "e" * 64],
            "Created": 0,
            "Size": 4261550,
        },
        {
            "Id": "sha256:" + "f" * 64,
            "RepoTags": None,
            "RepoDigests": None,
            "Created": 0,
            "Size": 10,
        },
    ]
    rows = image_rows(images, digests=True, trunc=True)
    assert [(r.Repository(), r.Tag(), r.Digest()) for r in rows] == [
        ("busybox", "latest", "sha256:" + "e" * 64),
        ("me/box", "1", "<none>"),
        ("<none>", "<none>", "<none>"),
    ]
    assert rows[0].ID() == "b" * 12
    assert rows[0].Size() == "4.26MB"


INSPECT = {
    "Id": "abc",
    "Name": "/web",
    "State": {"Status": "running", "Pid": 42, "Running": True, "Health": None},
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v", "a.b": "c"}, "Cmd": ["sh"]},
    "Mounts": [{"Source": "/a", "Destination": "/b"}, {"Source": "/c", "Destination": "/d"}],
}


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("{{.State.Status}}", "running"),
        ("{{.State.Pid}}", "42"),
        ("{{.State.Running}}", "true"),
        ("{{json .Config.Labels}}", '{"k":"v","a.b":"c"}'),
        ('{{index .Config.Labels "a.b"}}', "c"),
        ("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", "/a:/b /c:/d "),
        ("{{.Name | upper}}", "/WEB"),
        ("{{lower .Name}}", "/web"),
        ('{{if eq .State.Status "running"}}up{{else}}down{{end}}', "up"),
        ("{{.Config.Env}}", "[A=1 B=2]"),
        ("{{.Config.Labels}}", "map[a.b:c k:v]"),
        ("{{.Missing}}", "<no value>"),
        ("{{.State.Health}}", "<nil>"),
        ("{{len .Mounts}}", "2"),
        ('{{join .Config.Env ","}}', "A=1,B=2"),
        ("{{- .Id -}}   x", "abcx"),
        ("{{with .State}}{{.Pid}}{{end}}", "42"),
        ('{{printf "%s-%d" .Name .State.Pid}}', "/web-42"),
        ("{{range .Nope}}x{{else}}empty{{end}}", "empty"),
        ("{{(index .Mounts 1).Source}}", "/c"),
    ],
)
def test_go_template_subset(source: str, text: str) -> None:
    assert Template(source).execute(INSPECT) == text


@pytest.mark.parametrize(
    "source", ["{{.Name", "{{nosuchfunc .Name}}", "{{end}}", "{{range .Mounts}}"]
)
def test_template_errors(source: str) -> None:
    with pytest.raises(TemplateError):
        Template(source).execute(INSPECT)
