"""Image references, parsed by the distribution/reference grammar and normalised like docker.

The grammar is built from the same EBNF pieces as distribution/reference (domain, path
component, tag, digest) rather than one loose regex, so that every rejection can name the part
that is wrong. A `Reference` is validated when it is constructed: holding one means it is valid
and canonical, and `Reference.parse(str(ref)) == ref`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ocync_core.digest import Digest
from ocync_core.errors import InvalidDigest, InvalidReference

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "LEGACY_DEFAULT_DOMAIN",
    "NAME_TOTAL_LENGTH_MAX",
    "TAG_LENGTH_MAX",
    "Reference",
    "validate_repository",
    "validate_tag",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255
TAG_LENGTH_MAX = 128

# --- the grammar, piece by piece (distribution/reference regexp.go) -------------------------
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = re.compile(rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*")
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_NAME_COMPONENT}(?:\.{_DOMAIN_NAME_COMPONENT})*"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_DOMAIN_AND_PORT = re.compile(rf"(?:{_DOMAIN_NAME}|{_IPV6_ADDRESS}){_OPTIONAL_PORT}")
# Go's \w is ASCII-only; Python's is Unicode unless told otherwise.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _show(text: str, limit: int = 120) -> str:
    """Quote user input for an error message without letting a huge value flood the log."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _repository_problem(path: str) -> str | None:
    """Why `path` is not a valid repository path, naming the bad component; None if valid."""
    if not path:
        return "repository path is empty"
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        return f"repository path is longer than {NAME_TOTAL_LENGTH_MAX} characters"
    for component in path.split("/"):
        if _PATH_COMPONENT.fullmatch(component):
            continue
        if not component:
            return "repository path has an empty component (leading, trailing or doubled '/')"
        if component in (".", ".."):
            return f"repository path component {component!r} is not allowed (path traversal)"
        if _PATH_COMPONENT.fullmatch(component.lower()):
            return f"repository path component {_show(component)} must be lowercase"
        if ":" in component:
            return (
                f"repository path component {_show(component)} contains ':' "
                "(a ':tag' may only follow the last path component, once)"
            )
        return (
            f"repository path component {_show(component)} is invalid: use lowercase letters "
            "and digits, separated by '.', '_', '__' or dashes"
        )
    return None


def _tag_problem(tag: str) -> str | None:
    """Why `tag` is not a valid tag; None if valid."""
    if len(tag) > TAG_LENGTH_MAX:
        return f"tag {_show(tag)} is longer than {TAG_LENGTH_MAX} characters"
    if not _TAG.fullmatch(tag):
        return (
            f"tag {_show(tag)} is invalid: it must start with a letter, digit or '_' and "
            "contain only letters, digits, '_', '.' and '-'"
        )
    return None


def _domain_problem(domain: str) -> str | None:
    """Why `domain` cannot be a registry host; None if valid.

    A domain must also *look* like one (contain '.' or ':', or be 'localhost'), otherwise its
    string form would parse back as a Docker Hub namespace.
    """
    if not _DOMAIN_AND_PORT.fullmatch(domain):
        return f"domain {_show(domain)} is not a valid registry host[:port]"
    if domain != "localhost" and not any(c in domain for c in ".:"):
        return (
            f"domain {_show(domain)} would be read as a Docker Hub namespace; "
            "a registry host needs a '.', a ':port', or must be 'localhost'"
        )
    return None


def validate_repository(path: str) -> str:
    """Return `path` if it is a valid repository path; the error names the bad component."""
    problem = _repository_problem(path)
    if problem:
        raise InvalidReference(f"repository {_show(path)}: {problem}")
    return path


def validate_tag(tag: str) -> str:
    """Return `tag` if it is a valid tag (≤128 characters, `[\\w][\\w.-]*`)."""
    problem = _tag_problem(tag)
    if problem:
        raise InvalidReference(problem)
    return tag


def _split_domain(name: str) -> tuple[str, str]:
    """Split a name into (domain, path) following docker's rules (normalize.go).

    The first component is a domain iff there is more than one component and it contains '.'
    or ':' or is 'localhost'. Unlike docker, an uppercase first component is *not* taken as a
    domain: `MyOrg/app` almost always means a Docker Hub namespace typed with capitals, and
    is better refused as such than sent to a host named `MyOrg`.
    """
    first, slash, rest = name.partition("/")
    if slash and (first == "localhost" or any(c in first for c in ".:")):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    return _normalise(domain, path)


def _normalise(domain: str, path: str) -> tuple[str, str]:
    """Canonical Docker Hub form: `index.docker.io` → `docker.io`, `nginx` → `library/nginx`."""
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


@dataclass(frozen=True)
class Reference:
    """A validated, canonical image reference: `domain/repository[:tag][@digest]`."""

    domain: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    def __post_init__(self) -> None:
        domain, repository = _normalise(self.domain, self.repository)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "repository", repository)
        problem = (
            _domain_problem(domain)
            or _repository_problem(repository)
            or (_tag_problem(self.tag) if self.tag is not None else None)
        )
        if not problem and len(self.name) > NAME_TOTAL_LENGTH_MAX:
            problem = f"name is longer than {NAME_TOTAL_LENGTH_MAX} characters"
        if problem:
            raise InvalidReference(f"reference {_show(self._unchecked_str())}: {problem}")

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse `[domain/]path[:tag][@digest]`, normalising familiar Docker Hub names."""

        def bad(problem: str) -> InvalidReference:
            return InvalidReference(f"reference {_show(text)}: {problem}")

        if not text:
            raise InvalidReference("reference is empty")
        if _CONTROL.search(text):
            raise bad("contains whitespace or a control character")
        if _IDENTIFIER.fullmatch(text):
            raise bad(
                "a 64-character hex string is not a repository name "
                f"(for a digest write 'name@sha256:{text[:12]}...')"
            )
        name, at, digest_text = text.partition("@")
        digest = None
        if at:
            try:
                digest = Digest.parse(digest_text)
            except InvalidDigest as exc:
                raise bad(str(exc)) from exc
        # A tag follows the last ':' only if no '/' comes after it; otherwise that ':' is a port.
        colon = name.rfind(":")
        tag = None
        if colon > name.rfind("/"):
            name, tag = name[:colon], name[colon + 1 :]
            problem = _tag_problem(tag)
            if problem:
                raise bad(problem)
        if any(part in (".", "..") for part in name.split("/")):
            raise bad("'.' and '..' path components are not allowed (path traversal)")
        domain, path = _split_domain(name)
        problem = _domain_problem(domain) if domain != DEFAULT_DOMAIN else None
        problem = problem or _repository_problem(path)
        if problem:
            raise bad(problem)
        return cls(domain, path, tag, digest)

    @property
    def name(self) -> str:
        """`domain/repository`, e.g. `docker.io/library/nginx`."""
        return f"{self.domain}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after `/manifests/`: the digest if pinned, else the tag (default latest)."""
        return str(self.digest) if self.digest else (self.tag or DEFAULT_TAG)

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=validate_tag(tag))

    def with_digest(self, digest: Digest) -> Reference:
        return replace(self, digest=digest)

    def with_repository(self, repository: str) -> Reference:
        return replace(self, repository=validate_repository(repository))

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest else ""
        return tag + digest

    def _unchecked_str(self) -> str:
        return f"{self.domain}/{self.repository}{self._suffix()}"

    def __str__(self) -> str:
        return self.name + self._suffix()

    @property
    def familiar(self) -> str:
        """Docker's short form (`nginx:latest`, `user/app@sha256:...`), for human output."""
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            short = self.repository.removeprefix(OFFICIAL_REPO_PREFIX)
            if "/" in short:
                short = self.repository
            # Dropping 'docker.io/' must not make the first component read as a domain.
            if _split_domain(short)[0] == DEFAULT_DOMAIN:
                name = short
        return name + (self._suffix() or f":{DEFAULT_TAG}")
