"""Token scopes in the distribution token grammar: `repository:<name>:<action>[,<action>...]`.

Registries issue tokens per scope set (Chainguard even refuses a token used outside the set it
was issued for), so the engine asks for exactly what a request needs: `pull` on the source,
`pull,push` on the target plus `pull` on every repository a blob is mounted from.
"""

from __future__ import annotations

from collections.abc import Iterable

from ocync_core.errors import BadInput
from ocync_core.policies import Scopes

__all__ = ["merge_scopes", "pull_scopes", "push_scopes", "repository_scope", "scopes_cover"]


def repository_scope(repository: str, *actions: str) -> str:
    """`repository_scope("team/app", "pull", "push")` → `"repository:team/app:pull,push"`.

    Duplicate actions are dropped, order is kept (servers compare scope strings verbatim in
    their caches, so the same request must always produce the same string).
    """
    if not repository or any(c in repository for c in " \t:,"):
        raise BadInput(f"repository {repository!r} cannot appear in a token scope")
    if not actions:
        raise BadInput(f"a scope for repository {repository!r} needs at least one action")
    unique: list[str] = []
    for action in actions:
        if not action or any(c in action for c in " \t:,"):
            raise BadInput(f"action {action!r} cannot appear in a token scope")
        if action not in unique:
            unique.append(action)
    return f"repository:{repository}:{','.join(unique)}"


def pull_scopes(repository: str) -> Scopes:
    """What reading a repository needs."""
    return frozenset({repository_scope(repository, "pull")})


def push_scopes(repository: str, *mount_from: str) -> Scopes:
    """What writing `repository` needs, plus `pull` on each repository blobs are mounted from."""
    scopes = {repository_scope(repository, "pull", "push")}
    scopes.update(repository_scope(source, "pull") for source in mount_from if source != repository)
    return frozenset(scopes)


def _split(scope: str) -> tuple[str, str, list[str]] | None:
    """`type:name:a,b` → (type, name, [a, b]); names may hold colons, actions may not."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name or not actions:
        return None
    return kind, name, [a for a in actions.split(",") if a]


def scopes_cover(have: Iterable[str], want: Iterable[str]) -> bool:
    """Whether every action `want` names is granted by some scope in `have` (`*` grants all)."""
    granted: dict[tuple[str, str], set[str]] = {}
    opaque: set[str] = set()
    for scope in have:
        parts = _split(scope)
        if parts is None:
            opaque.add(scope)
        else:
            granted.setdefault(parts[:2], set()).update(parts[2])
    for scope in want:
        parts = _split(scope)
        if parts is None:
            if scope not in opaque:
                return False
            continue
        actions = granted.get(parts[:2], set())
        if "*" not in actions and not set(parts[2]) <= actions:
            return False
    return True


def merge_scopes(*groups: Iterable[str]) -> Scopes:
    """One scope per resource, with the union of the actions (in first-seen order).

    `{repository:a:pull}` + `{repository:a:push}` → `{repository:a:pull,push}`: one token
    request that names each repository once, as registries expect.
    """
    merged: dict[tuple[str, str], list[str]] = {}
    opaque: set[str] = set()
    for group in groups:
        for scope in group:
            parts = _split(scope)
            if parts is None:
                opaque.add(scope)
                continue
            actions = merged.setdefault(parts[:2], [])
            actions.extend(a for a in parts[2] if a not in actions)
    out = {f"{kind}:{name}:{','.join(actions)}" for (kind, name), actions in merged.items()}
    return frozenset(out | opaque)
