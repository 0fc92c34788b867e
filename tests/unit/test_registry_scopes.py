"""portside.registry.scopes: the ``type[(class)]:name:actions`` grammar, names with
host:port, several scopes per value, merging."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.errors import InvalidArgument
from portside.registry.scopes import (
    MAX_SCOPES,
    InvalidScope,
    Scope,
    format_scopes,
    merge,
    parse_scope,
    parse_scopes,
)


@pytest.mark.parametrize(
    ("text", "type_", "cls", "name", "actions"),
    [
        ("repository:alice/app:pull,push", "repository", "", "alice/app", ("pull", "push")),
        ("repository:busybox:pull", "repository", "", "busybox", ("pull",)),
        ("repository(plugin):alice/p:pull", "repository", "plugin", "alice/p", ("pull",)),
        ("registry:catalog:*", "registry", "", "catalog", ("*",)),
        (
            "repository:localhost:5000/team/app:pull",
            "repository",
            "",
            "localhost:5000/team/app",
            ("pull",),
        ),
        ("repository:Reg.Example:443/a:push", "repository", "", "Reg.Example:443/a", ("push",)),
        ("repository:a/b:", "repository", "", "a/b", ()),
        ("repository:a/b:pull,,pull,push", "repository", "", "a/b", ("pull", "push")),
        ("repository:a/b:delete", "repository", "", "a/b", ("delete",)),
    ],
)
def test_parse(text: str, type_: str, cls: str, name: str, actions: tuple[str, ...]) -> None:
    scope = parse_scope(text)
    assert (scope.type, scope.resource_class, scope.name, scope.actions) == (
        type_,
        cls,
        name,
        actions,
    )


def test_actions_split_at_the_last_colon() -> None:
    # a host:port name must not be taken for the actions, nor the port for a name
    scope = parse_scope("repository:127.0.0.1:5000/app:pull")
    assert scope.name == "127.0.0.1:5000/app"
    assert scope.actions == ("pull",)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "repository",
        "repository:app",  # no actions part
        ":app:pull",  # no type
        "Repository:app:pull",  # uppercase type
        "repo-sitory:app:pull",
        "repository(:app:pull",
        "repository():app:pull",
        "repository(Plugin):app:pull",
        "repository::pull",  # no name
        'repository:a"b:pull',
        "repository:a b:pull",
        "repository:a,b:pull",
        "repository:app:PULL",
        "repository:app:pull;rm",
        "repository:app:pu ll",
        "repository:" + "a" * 600 + ":pull",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(InvalidScope) as info:
        parse_scope(text)
    assert isinstance(info.value, InvalidArgument)


def test_several_values_and_repeated_parameters() -> None:
    values = ["repository:a/b:pull repository:c/d:pull,push", "registry:catalog:*", "  "]
    assert [str(s) for s in parse_scopes(values)] == [
        "repository:a/b:pull",
        "repository:c/d:pull,push",
        "registry:catalog:*",
    ]


def test_too_many_scopes() -> None:
    with pytest.raises(InvalidScope, match="too many"):
        parse_scopes([f"repository:r/{i}:pull" for i in range(MAX_SCOPES + 1)])
    assert len(parse_scopes([f"repository:r/{i}:pull" for i in range(MAX_SCOPES)])) == MAX_SCOPES


def test_merge_folds_the_same_resource() -> None:
    scopes = parse_scopes(
        ["repository:a/b:pull", "repository:c:push repository:a/b:push,pull", "registry:catalog:*"]
    )
    merged = merge([*scopes, parse_scope("repository(plugin):a/b:pull")])
    assert [str(s) for s in merged] == [
        "repository:a/b:pull,push",
        "repository:c:push",
        "registry:catalog:*",
        "repository(plugin):a/b:pull",
    ]


def test_claim_and_format() -> None:
    plugin = parse_scope("repository(plugin):a/b:pull")
    assert plugin.claim() == {"type": "repository", "class": "plugin", "name": "a/b",
                              "actions": ["pull"]}  # fmt: skip
    assert parse_scope("repository:a:push").claim() == {
        "type": "repository",
        "name": "a",
        "actions": ["push"],
    }
    assert format_scopes([plugin, parse_scope("registry:catalog:*")]) == (
        "repository(plugin):a/b:pull registry:catalog:*"
    )
    assert parse_scope("repository:a:pull") == Scope("repository", "a", ["pull"])
    assert len({parse_scope("repository:a:pull"), Scope("repository", "a", ["pull"])}) == 1


# --- properties -----------------------------------------------------------------------

_lower = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
_component = st.from_regex(r"[a-z0-9]+(?:[._-][a-z0-9]+)?", fullmatch=True).filter(
    lambda s: len(s) <= 20
)
_host = st.builds(
    lambda h, p: f"{h}:{p}" if p is not None else h,
    st.from_regex(r"[a-zA-Z0-9]+(?:\.[a-zA-Z0-9]+)?", fullmatch=True).filter(
        lambda s: len(s) <= 20
    ),
    st.none() | st.integers(1, 65535),
)
_name = st.builds(
    lambda host, parts: "/".join(([host] if host else []) + parts),
    st.none() | _host,
    st.lists(_component, min_size=1, max_size=4),
)
_actions = st.lists(st.sampled_from(["pull", "push", "delete", "*", "x"]), max_size=4)
_scope = st.builds(Scope, _lower, _name, _actions, st.just("") | _lower)


@given(_scope)
def test_round_trip(scope: Scope) -> None:
    assert parse_scope(str(scope)) == scope


@given(st.lists(_scope, max_size=6))
def test_round_trip_of_a_joined_value(scopes: list[Scope]) -> None:
    assert parse_scopes([format_scopes(scopes)]) == scopes
    assert merge(parse_scopes([format_scopes(scopes)])) == merge(scopes)


@given(st.text(max_size=80))
def test_arbitrary_text_is_a_scope_or_invalid(text: str) -> None:
    try:
        scopes = parse_scopes([text])
    except InvalidScope:
        return
    for scope in scopes:
        assert " " not in scope.name and scope.name
        assert parse_scope(str(scope)) == scope
