"""The pydantic models of the configuration file. Unknown keys are errors at every level.

The registry model is built per set of loaded plugins (`build_models`): plugin-contributed
registry keys and the plugins' registry kinds become part of it, and of the JSON Schema.
"""

import difflib
import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    model_validator,
)

from ocync_core.config._types import (
    Duration,
    FilePath,
    OptionalPath,
    StringList,
    Text,
    problem,
    resolve_path,
    show_value,
)
from ocync_core.errors import BadInput
from ocync_core.manifest import Platform
from ocync_core.reference import validate_repository, validate_tag
from ocync_core.registry import split_registry_url

__all__ = [
    "AUTH_TYPES",
    "DEFAULT_CACHE",
    "ArtifactSettings",
    "ConfigBase",
    "Credentials",
    "Defaults",
    "GlobalSettings",
    "MappingModel",
    "RegistryBase",
    "TagFilter",
    "build_models",
]

AUTH_TYPES: tuple[str, ...] = ("auto", "anonymous", "basic", "token", "docker_config")
DEFAULT_CACHE = "~/.cache/ocync/transfer-state.json"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


# -- small types ------------------------------------------------------------------------------


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise problem(
            f"invalid name {value[:60]!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return value


Name = Annotated[Text, AfterValidator(_check_name)]


def _secret_text(value: Any) -> Any:
    # A numeric password (`password: 123456`) is its text, not an error.
    text = getattr(value, "yaml_text", None)
    if text is not None:
        return text
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Secret = Annotated[SecretStr, BeforeValidator(_secret_text)]


def _check_registry_url(value: str) -> str:
    try:
        scheme, netloc = split_registry_url(value.strip())
    except BadInput as exc:
        raise problem(str(exc)) from None
    if scheme is None and "/" in netloc:
        raise problem(
            f"{value[:100]!r} has a path; a registry URL is host[:port] or "
            "http(s)://host[:port] (repository paths go in the mappings' from/to)"
        )
    if not _HOST.fullmatch(netloc):
        raise problem(f"{value[:100]!r} is not host[:port] or http(s)://host[:port]")
    return value.strip()


RegistryUrl = Annotated[Text, AfterValidator(_check_registry_url)]


def _check_repository(value: str) -> str:
    return validate_repository(value)  # InvalidReference is a ValueError: pydantic reports it


Repository = Annotated[Text, AfterValidator(_check_repository)]


def _check_platforms(value: list[str]) -> list[str]:
    if not value:
        raise problem("empty list: leave 'platforms' out to copy every platform")
    return [str(Platform.parse(text)) for text in value]


_PLATFORM_PATTERN = r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)?$"
PlatformList = Annotated[
    StringList,
    AfterValidator(_check_platforms),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _PLATFORM_PATTERN},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "pattern": _PLATFORM_PATTERN},
                },
            ],
            "description": "os/architecture[/variant], e.g. linux/amd64, linux/arm64/v8",
        }
    ),
]


def _non_empty_items(what: str) -> Any:
    def check(value: list[str]) -> list[str]:
        for i, item in enumerate(value):
            if not item.strip():
                raise problem(f"empty {what}", at=f"[{i}]" if len(value) > 1 else None)
        return value

    return AfterValidator(check)


def _check_tags(value: list[str]) -> list[str]:
    for i, tag in enumerate(value):
        try:
            validate_tag(tag)
        except BadInput as exc:
            raise problem(str(exc), at=f"[{i}]" if len(value) > 1 else None) from None
    return value


def _check_semver(value: str) -> str:
    if not value.strip():
        raise problem("empty semver range (write e.g. '>=1.2 <2', '^1.4' or '*')")
    try:
        from ocync_core.filters import parse_semver_range  # the tag filters' own parser
    except ImportError:
        parse_semver_range = _node_semver_range
    try:
        parse_semver_range(value)
    except Exception as exc:  # a parser's complaint, whatever its class, is the user's error
        detail = str(exc).strip() or type(exc).__name__
        if value in detail:
            raise problem(detail) from None
        raise problem(f"invalid semver range {value[:100]!r}: {detail}") from None
    return value


def _node_semver_range(text: str) -> object:
    """Fallback range check with node-semver, when installed (else the range is not checked)."""
    try:
        import nodesemver
    except ImportError:
        return None
    return nodesemver.Range(text, False)


# -- global -----------------------------------------------------------------------------------


def _cache_value(value: Any, info: ValidationInfo) -> Any:
    if value is False or value is None:
        return None
    if value is True:
        return resolve_path(DEFAULT_CACHE, info)
    if isinstance(value, str):
        if not value.strip():
            raise problem("expected a path or false, got an empty string")
        return resolve_path(value, info)
    raise problem(f"expected a path or false, got {show_value(value)}")


CacheSetting = Annotated[
    Path | None,
    BeforeValidator(_cache_value),
    PlainSerializer(lambda v: str(v) if v is not None else False),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "boolean"}, {"type": "null"}],
            "description": "path of the transfer-state cache, or false to disable it",
        }
    ),
]


class GlobalSettings(StrictModel):
    """Run-wide settings (the `global` section)."""

    max_concurrent_images: int = Field(16, ge=1, description="(tag, target) pairs in flight")
    cache: CacheSetting = Field(
        default_factory=lambda: resolve_path(DEFAULT_CACHE, None),
        description="transfer-state cache file, or false to disable",
    )
    cache_ttl: Duration = Field(
        24 * 3600.0,
        description="how long cache entries hold (seconds once loaded)",
        json_schema_extra={"default": "24h"},
    )
    drain_deadline: Duration = Field(
        25.0,
        description="on SIGINT/SIGTERM, how long in-flight work may finish",
        json_schema_extra={"default": "25s"},
    )
    staging_dir: OptionalPath | None = Field(
        None, description="where blobs are staged for several targets (default: a temp dir)"
    )


# -- registries -------------------------------------------------------------------------------


class Credentials(StrictModel):
    """Basic credentials of a registry."""

    username: Text
    password: Secret


class RegistryBase(StrictModel):
    """One registry. `build_models` derives the real model with the plugins' keys."""

    url: RegistryUrl = Field(description="host[:port] or http(s)://host[:port]")
    kind: str | None = Field(None, description="registry kind; overrides detection")
    auth_type: str = Field("auto", description="how to authenticate")
    credentials: Credentials | None = None
    token: Secret | None = Field(None, description="a bearer/identity token")
    docker_config: OptionalPath | None = Field(None, description="a docker config.json to use")
    endpoint: RegistryUrl | None = Field(
        None, description="where requests go instead of url (proxy, VPC endpoint, emulator)"
    )
    tls_verify: bool = True
    ca_file: FilePath | None = Field(None, description="PEM bundle of CAs to trust")
    insecure_http: bool = Field(False, description="talk plain HTTP to this registry")
    max_concurrent: int = Field(16, ge=1, le=1024, description="requests in flight at once")
    timeout: Duration = Field(
        300.0,
        gt=0,
        description="how long a request may wait for the registry's next bytes",
        json_schema_extra={"default": "5m"},
    )
    connect_timeout: Duration = Field(
        30.0,
        gt=0,
        description="how long opening a connection may take",
        json_schema_extra={"default": "30s"},
    )

    @model_validator(mode="after")
    def _ocync_registry_consistent(self) -> "RegistryBase":
        if self.auth_type == "basic" and self.credentials is None:
            raise problem(
                "auth_type 'basic' needs credentials (username and password)", at="credentials"
            )
        if self.auth_type == "token" and self.token is None:
            raise problem("auth_type 'token' needs a token", at="token")
        if self.auth_type == "anonymous" and (self.credentials or self.token):
            raise problem(
                "auth_type 'anonymous' sends no credentials: remove credentials/token, "
                "or choose another auth_type",
                at="auth_type",
            )
        if self.auth_type == "auto" and self.credentials and self.token:
            raise problem(
                "both credentials and token are set: keep one, or say which with auth_type",
                at="token",
            )
        if self.insecure_http and self.url.lower().startswith("https://"):
            raise problem("insecure_http contradicts the https:// url", at="insecure_http")
        return self


# -- mappings ---------------------------------------------------------------------------------


class TagFilter(StrictModel):
    """Which tags of a repository are mirrored. No key at all: every tag."""

    glob: Annotated[StringList, _non_empty_items("glob")] = Field(
        default_factory=list, description="tags matching any of these globs"
    )
    semver: Annotated[Text, AfterValidator(_check_semver)] | None = Field(
        None, description="tags that are versions in this range, e.g. '>=1.2 <2'"
    )
    include: Annotated[StringList, AfterValidator(_check_tags)] = Field(
        default_factory=list, description="literal tags always kept"
    )
    exclude: Annotated[StringList, _non_empty_items("glob")] = Field(
        default_factory=list, description="globs of tags to drop"
    )
    sort: Literal["semver", "alpha"] | None = Field(None, description="order before 'latest'")
    latest: int | None = Field(None, ge=1, description="keep only the last N after sorting")
    min_tags: int = Field(0, ge=0, description="fail the mapping when fewer tags match")
    immutable_tags: Text | None = Field(
        None, description="glob: tags matching it that exist at the target are skipped"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "TagFilter":
        if self.latest is not None and self.sort is None:
            raise problem("'latest' needs 'sort' (semver or alpha)", at="latest")
        if self.immutable_tags is not None and not self.immutable_tags.strip():
            raise problem("empty glob", at="immutable_tags")
        return self

    @property
    def literal_only(self) -> bool:
        """Only literal `include` tags: the source's tag list need not be fetched."""
        return bool(self.include) and not self.glob and self.semver is None


class ArtifactSettings(StrictModel):
    """Referrers (signatures, SBOMs, attestations) copied with each image."""

    enabled: bool = True
    include: Annotated[StringList, _non_empty_items("artifact type")] = Field(
        default_factory=list, description="only referrers of these artifact types"
    )
    exclude: Annotated[StringList, _non_empty_items("artifact type")] = Field(
        default_factory=list, description="never referrers of these artifact types"
    )
    require_artifacts: bool = Field(False, description="fail an image that has no referrers")

    @model_validator(mode="after")
    def _consistent(self) -> "ArtifactSettings":
        if self.require_artifacts and not self.enabled:
            raise problem(
                "require_artifacts needs enabled: true (artifacts are disabled)",
                at="require_artifacts",
            )
        return self


_TARGETS_DOC = "a registry alias, a target group, or a list of them"


class Defaults(StrictModel):
    """Values every mapping takes unless it sets its own."""

    source: Name | None = Field(None, description="registry alias to copy from")
    targets: Annotated[StringList, _non_empty_items("target")] | None = Field(
        None, description=_TARGETS_DOC
    )
    tags: TagFilter | None = None
    platforms: PlatformList | None = None
    artifacts: ArtifactSettings | None = None


class MappingModel(StrictModel):
    """One repository to mirror from a source registry to target registries."""

    from_: Repository = Field(alias="from", description="repository path at the source")
    to: Repository | None = Field(None, description="repository path at the targets (= from)")
    source: Name | None = Field(None, description="registry alias to copy from")
    targets: Annotated[StringList, _non_empty_items("target")] | None = Field(
        None, description=_TARGETS_DOC
    )
    tags: TagFilter | None = None
    platforms: PlatformList | None = None
    artifacts: ArtifactSettings | None = None


class ConfigBase(StrictModel):
    """The whole file. `registries` is typed by `build_models`."""

    global_: GlobalSettings = Field(default_factory=GlobalSettings, alias="global")
    registries: dict[Name, RegistryBase]
    target_groups: dict[Name, Annotated[StringList, _non_empty_items("registry alias")]] = Field(
        default_factory=dict
    )
    defaults: Defaults = Field(default_factory=Defaults)
    mappings: list[MappingModel]


# -- the per-plugins models -------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def build_models(
    kinds: tuple[str, ...], plugin_models: tuple[type[BaseModel], ...]
) -> tuple[type[RegistryBase], type[ConfigBase]]:
    """The registry and root models for these plugin kinds and plugin registry models."""
    from ocync_core.plugins import PluginError

    taken = {name: "ocync" for name in RegistryBase.model_fields}
    for model in plugin_models:
        for name, field in model.model_fields.items():
            key = field.alias or name
            if key in taken:
                raise PluginError(
                    f"registry key {key!r} of plugin model {model.__qualname__} is already "
                    f"defined by {taken[key]}"
                )
            if field.is_required():
                raise PluginError(
                    f"registry key {key!r} of plugin model {model.__qualname__} is required; "
                    "plugin keys must have a default (most registries are not of that kind)"
                )
            taken[key] = model.__qualname__
    auth_types = tuple(dict.fromkeys((*AUTH_TYPES, *kinds)))

    def check_kind(value: str | None) -> str | None:
        if value is not None and value not in kinds:
            close = difflib.get_close_matches(value, kinds, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise problem(
                f"unknown kind {value[:60]!r} (kinds of the loaded plugins: "
                f"{', '.join(kinds)}){hint}; install the plugin that provides it"
            )
        return value

    def check_auth_type(value: str) -> str:
        if value not in auth_types:
            close = difflib.get_close_matches(value, auth_types, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise problem(
                f"unknown auth_type {value[:60]!r} (expected one of: {', '.join(auth_types)}){hint}"
            )
        return value

    kind_type = Annotated[
        Text, AfterValidator(check_kind), WithJsonSchema({"type": "string", "enum": list(kinds)})
    ]
    auth_type = Annotated[
        Text,
        AfterValidator(check_auth_type),
        WithJsonSchema({"type": "string", "enum": list(auth_types)}),
    ]
    registry = create_model(
        "Registry",
        __base__=(*plugin_models, RegistryBase),
        __module__=__name__,
        # Class keywords override the bases' config: a plugin model's `extra` cannot loosen it.
        __cls_kwargs__={
            "extra": "forbid",
            "frozen": True,
            "hide_input_in_errors": True,
            "title": "Registry",
        },
        kind=(kind_type | None, Field(None, description="registry kind; overrides detection")),
        auth_type=(auth_type, Field("auto", description="how to authenticate")),
    )
    root = create_model(
        "OcyncConfig",
        __base__=ConfigBase,
        __module__=__name__,
        registries=(dict[Name, registry], Field(description="registries by alias")),
    )
    return registry, root
