"""Scope strings and the credentials value type."""

from __future__ import annotations

import base64

import pytest

from ocync_core.auth import (
    Credentials,
    merge_scopes,
    pull_scopes,
    push_scopes,
    repository_scope,
    scopes_cover,
)
from ocync_core.errors import BadInput


def test_repository_scope() -> None:
    assert repository_scope("team/app", "pull", "push") == "repository:team/app:pull,push"
    assert repository_scope("library/nginx", "pull", "pull") == "repository:library/nginx:pull"


@pytest.mark.parametrize(("repo", "actions"), [("", ("pull",)), ("a b", ("pull",)), ("a", ())])
def test_repository_scope_rejects(repo: str, actions: tuple[str, ...]) -> None:
    with pytest.raises(BadInput):
        repository_scope(repo, *actions)


def test_pull_and_push_scopes() -> None:
    assert pull_scopes("a/b") == frozenset({"repository:a/b:pull"})
    assert push_scopes("t/app", "s/base", "s/lib", "t/app") == frozenset(
        {"repository:t/app:pull,push", "repository:s/base:pull", "repository:s/lib:pull"}
    )


def test_credentials_never_show_secrets() -> None:
    creds = Credentials("bob", "hunter2", identity_token="refresh-xyz")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds]), repr({"c": creds})):
        assert "hunter2" not in text
        assert "refresh-xyz" not in text
        assert "bob" in text
    assert repr(Credentials("bob", "pw")) == "Credentials(username='bob', password=***)"


def test_basic_header() -> None:
    header = Credentials("bob", "p:ss").basic_header()
    scheme, _, value = header.partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value) == b"bob:p:ss"


def test_scopes_cover() -> None:
    have = {"repository:a:pull,push", "registry:catalog:*", "opaque"}
    assert scopes_cover(have, {"repository:a:push"})
    assert scopes_cover(have, {"repository:a:pull", "registry:catalog:search", "opaque"})
    assert not scopes_cover(have, {"repository:b:pull"})
    assert not scopes_cover(have, {"repository:a:delete"})
    assert not scopes_cover(have, {"other"})
    assert scopes_cover(set(), set())


def test_merge_scopes() -> None:
    assert merge_scopes({"repository:a:pull"}, {"repository:a:push", "repository:b:pull"}) == {
        "repository:a:pull,push",
        "repository:b:pull",
    }
    assert merge_scopes({"repository:localhost:5000/x:pull"}) == {
        "repository:localhost:5000/x:pull"
    }
    assert merge_scopes({"opaque"}, ()) == {"opaque"}
