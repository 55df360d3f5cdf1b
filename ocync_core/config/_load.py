"""Loading, validating and resolving a configuration into what the engine consumes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretBytes, SecretStr, ValidationError

from ocync_core.config._interpolate import interpolate_tree
from ocync_core.config._models import (
    ArtifactSettings,
    ConfigBase,
    GlobalSettings,
    MappingModel,
    RegistryBase,
    TagFilter,
    build_models,
)
from ocync_core.config._problems import (
    ConfigProblems,
    Problem,
    looks_secret,
    secret_keys,
    translate,
)
from ocync_core.config._yaml import load_yaml
from ocync_core.errors import ConfigError
from ocync_core.manifest import Platform
from ocync_core.registry import RegistrySettings, split_registry_url

if TYPE_CHECKING:
    from ocync_core.plugins import Plugins

__all__ = [
    "Config",
    "ResolvedMapping",
    "ResolvedTarget",
    "config_json_schema",
    "load_config",
    "parse_config",
]

REDACTED = "***"


@dataclass(frozen=True)
class ResolvedTarget:
    """One target of a mapping: registry alias, its settings, the repository written there."""

    alias: str
    registry: RegistrySettings
    repository: str


@dataclass(frozen=True)
class ResolvedMapping:
    """A mapping with defaults applied, groups expanded and aliases turned into settings."""

    index: int
    source_alias: str
    source: RegistrySettings
    source_repository: str
    targets: tuple[ResolvedTarget, ...]
    tags: TagFilter
    platforms: tuple[Platform, ...]  # empty: every platform
    artifacts: ArtifactSettings

    @property
    def key(self) -> str:
        """Stable identity, e.g. ``src/chainguard/static -> ecr/static, gar/static``."""
        targets = ", ".join(f"{t.alias}/{t.repository}" for t in self.targets)
        return f"{self.source_alias}/{self.source_repository} -> {targets}"


class Config:
    """A validated configuration: the pydantic tree and the engine's view of it."""

    def __init__(
        self,
        model: ConfigBase,
        registries: dict[str, RegistrySettings],
        mappings: list[ResolvedMapping],
        source: str = "<config>",
    ) -> None:
        self.model = model
        self.settings: GlobalSettings = model.global_
        self.registries = registries
        self.mappings = mappings
        self.target_groups: dict[str, list[str]] = dict(model.target_groups)
        self.source = source

    def expand(self, redact: bool = True) -> dict[str, Any]:
        """The configuration with variables resolved and defaults filled in, as plain data.

        Secrets (values typed as secrets, and text under a key named like one) are shown as
        ``***`` unless `redact` is False.
        """
        expanded = _plain(self.model.model_dump(mode="python", by_alias=True), redact)
        if redact:
            for registry in expanded["registries"].values():
                _redact_named_secrets(registry)
        return expanded

    def __repr__(self) -> str:
        return (
            f"Config(source={self.source!r}, registries={list(self.registries)}, "
            f"mappings={len(self.mappings)})"
        )


def _plain(value: Any, redact: bool) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        if redact:
            return REDACTED
        secret = value.get_secret_value()
        return secret.decode() if isinstance(secret, bytes) else secret
    if isinstance(value, dict):
        return {key: _plain(item, redact) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, redact) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def _redact_named_secrets(node: dict[str, Any]) -> None:
    """Redact text under keys named like secrets, at any depth of a registry's settings (a
    plugin may type a secret as plain `str`)."""
    for key, value in node.items():
        secret = looks_secret(key)
        if isinstance(value, str) and secret:
            node[key] = REDACTED
        elif isinstance(value, dict):
            _redact_named_secrets(value)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str) and secret:
                    value[index] = REDACTED
                elif isinstance(item, dict):
                    _redact_named_secrets(item)


# -- entry points -----------------------------------------------------------------------------


def load_config(
    path: str | Path,
    plugins: Plugins | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read, interpolate, validate and resolve a YAML configuration file.

    Relative paths in the file (``ca_file``, ``cache``, ...) are relative to its directory.

    :raises ConfigError: the file is missing or unreadable, is not valid YAML, or is invalid;
        the message has one ``<file>: <path>: <problem>`` line per problem.
    """
    source = str(path)
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a configuration file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    data = load_yaml(text, source)
    return parse_config(
        data, source=source, plugins=plugins, env=env, base_dir=file.absolute().parent
    )


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    plugins: Plugins | None = None,
    env: Mapping[str, str] | None = None,
    base_dir: str | Path | None = None,
) -> Config:
    """Validate already-parsed configuration data (a dict, as YAML gives it).

    :param source: how messages name the configuration (its file name).
    :param plugins: the loaded plugins (their kinds and registry keys); None loads them.
    :param env: variables for ``${VAR}``; None uses the process environment.
    :param base_dir: what relative paths are relative to; None is the working directory.
    :raises ConfigError: every problem, one ``<source>: <path>: <problem>`` line each.
    """
    if data is None:
        raise ConfigProblems(
            source, [Problem("", "the configuration is empty (expected registries and mappings)")]
        )
    if not isinstance(data, dict):
        raise ConfigProblems(
            source,
            [
                Problem(
                    "",
                    f"expected a mapping at the top level (registries:, mappings:, ...), "
                    f"got {'a list' if isinstance(data, list) else type(data).__name__}",
                )
            ],
        )
    if plugins is None:
        from ocync_core.plugins import Plugins

        plugins = Plugins.load()
    registry_model, root_model = _models_for(plugins)
    interpolated = interpolate_tree(data, os.environ if env is None else env)
    if interpolated.problems:
        raise ConfigProblems(
            source,
            [Problem(_path(loc), message) for loc, message in interpolated.problems],
        )
    context = {"base_dir": Path(base_dir) if base_dir is not None else None}
    try:
        model = root_model.model_validate(interpolated.tree, context=context)
    except ValidationError as exc:
        problems = translate(exc, root_model, secret_keys(root_model), interpolated.templates)
        raise ConfigProblems(source, problems) from None
    plugin_keys = [
        name for name in registry_model.model_fields if name not in RegistryBase.model_fields
    ]
    return _resolve(model, plugin_keys, source, plugins)


def config_json_schema(plugins: Plugins | None = None) -> dict[str, Any]:
    """The JSON Schema of the configuration file, with the plugins' registry keys and kinds."""
    _, root_model = _models_for(plugins)
    schema = root_model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ocync configuration"
    return schema


def _models_for(plugins: Plugins | None) -> tuple[type[RegistryBase], type[ConfigBase]]:
    if plugins is None:
        from ocync_core.plugins import Plugins

        plugins = Plugins.load()
    return build_models(tuple(plugins.known_kinds()), tuple(plugins.registry_config_models()))


def _path(loc: tuple[Any, ...]) -> str:
    from ocync_core.config._problems import format_path

    return format_path(loc)


# -- resolution -------------------------------------------------------------------------------


def _registry_settings(alias: str, registry: Any, plugin_keys: list[str]) -> RegistrySettings:
    scheme, host = split_registry_url(registry.url)
    anonymous = registry.auth_type == "anonymous"
    credentials = None if anonymous else registry.credentials
    token = None if anonymous or registry.token is None else registry.token.get_secret_value()
    options: dict[str, Any] = {key: getattr(registry, key) for key in plugin_keys}
    options["auth_type"] = registry.auth_type
    return RegistrySettings(
        host=host,
        url=registry.url if scheme is not None else None,
        name=alias,
        kind=registry.kind,
        endpoint=registry.endpoint,
        tls_verify=registry.tls_verify,
        ca_file=str(registry.ca_file) if registry.ca_file is not None else None,
        insecure_http=registry.insecure_http,
        username=credentials.username if credentials else None,
        password=credentials.password.get_secret_value() if credentials else None,
        token=token,
        docker_config=str(registry.docker_config) if registry.docker_config else None,
        max_concurrent=registry.max_concurrent,
        timeout=registry.timeout,
        connect_timeout=registry.connect_timeout,
        options=options,
    )


def _resolve(model: ConfigBase, plugin_keys: list[str], source: str, plugins: Plugins) -> Config:
    problems: list[Problem] = []
    registries = {
        alias: _registry_settings(alias, registry, plugin_keys)
        for alias, registry in model.registries.items()
    }
    known = ", ".join([*model.registries, *model.target_groups]) or "none defined"
    groups: dict[str, list[str]] = {}
    for name, members in model.target_groups.items():
        if name in model.registries:
            problems.append(
                Problem(
                    f"target_groups.{name}",
                    f"{name!r} is already a registry alias; a group needs a name of its own",
                )
            )
        for i, member in enumerate(members):
            if member not in model.registries:
                at = f"target_groups.{name}" + (f"[{i}]" if len(members) > 1 else "")
                where = (
                    "a group, and groups cannot contain groups"
                    if member in model.target_groups
                    else "not a registry"
                )
                problems.append(
                    Problem(
                        at,
                        f"{member!r} is {where} (registries: "
                        f"{', '.join(model.registries) or 'none defined'})",
                    )
                )
        groups[name] = list(dict.fromkeys(members))

    def check_source(alias: str | None, at: str) -> None:
        if alias is not None and alias not in model.registries:
            hint = " (that is a target group; a source is one registry)" if alias in groups else ""
            problems.append(
                Problem(
                    at,
                    f"unknown registry {alias!r}{hint} "
                    f"(known: {', '.join(model.registries) or 'none defined'})",
                )
            )

    def expand_targets(names: list[str] | None, at: str) -> list[str]:
        aliases: list[str] = []
        for i, name in enumerate(names or ()):
            if name in model.registries:
                aliases.append(name)
            elif name in groups:
                aliases.extend(m for m in groups[name] if m in model.registries)
            else:
                where = at + (f"[{i}]" if len(names or ()) > 1 else "")
                problems.append(
                    Problem(where, f"unknown registry or group {name!r} (known: {known})")
                )
        return list(dict.fromkeys(aliases))

    defaults = model.defaults
    check_source(defaults.source, "defaults.source")
    default_targets = expand_targets(defaults.targets, "defaults.targets")

    mappings: list[ResolvedMapping] = []
    for index, mapping in enumerate(model.mappings):
        resolved = _resolve_mapping(
            index,
            mapping,
            defaults,
            default_targets,
            registries,
            check_source,
            expand_targets,
            problems,
            plugins,
        )
        if resolved is not None:
            mappings.append(resolved)
    if problems:
        raise ConfigProblems(source, problems)
    return Config(model, registries, mappings, source)


def _resolve_mapping(
    index: int,
    mapping: MappingModel,
    defaults: Any,
    default_targets: list[str],
    registries: dict[str, RegistrySettings],
    check_source: Any,
    expand_targets: Any,
    problems: list[Problem],
    plugins: Plugins,
) -> ResolvedMapping | None:
    at = f"mappings[{index}]"
    before = len(problems)
    source_alias = mapping.source if mapping.source is not None else defaults.source
    if source_alias is None:
        problems.append(Problem(f"{at}.source", "no source (set it on the mapping or in defaults)"))
    elif mapping.source is not None:
        check_source(mapping.source, f"{at}.source")
    if mapping.targets is not None:
        targets = expand_targets(mapping.targets, f"{at}.targets")
    else:
        targets = default_targets
        if defaults.targets is None:
            problems.append(
                Problem(f"{at}.targets", "no targets (set them on the mapping or in defaults)")
            )
    if len(problems) > before or source_alias not in registries:
        return None
    source = registries[source_alias]
    first, _, rest = mapping.from_.partition("/")
    if rest and first in (source.host.lower(), source.host.split(":")[0].lower()):
        problems.append(
            Problem(
                f"{at}.from",
                f"{mapping.from_!r} starts with the registry host; 'from' is "
                f"the repository path on the source ({rest!r})",
            )
        )
    # Each registry's own spelling (Docker Hub: `nginx` is `library/nginx`).
    source_repository = plugins.normalize_repository(source, mapping.from_)
    written = mapping.to if mapping.to is not None else mapping.from_
    repositories = {a: plugins.normalize_repository(registries[a], written) for a in targets}
    for alias in targets:
        if alias == source_alias and repositories[alias] == source_repository:
            problems.append(
                Problem(
                    f"{at}.targets",
                    f"target {alias!r} is the source registry and 'to' is "
                    "'from': the mapping would copy a repository onto itself",
                )
            )
    if len(problems) > before:
        return None
    return ResolvedMapping(
        index=index,
        source_alias=source_alias,
        source=source,
        source_repository=source_repository,
        targets=tuple(ResolvedTarget(a, registries[a], repositories[a]) for a in targets),
        tags=_pick(mapping.tags, defaults.tags, TagFilter),
        platforms=tuple(
            Platform.parse(p) for p in _pick(mapping.platforms, defaults.platforms, list)
        ),
        artifacts=_pick(mapping.artifacts, defaults.artifacts, ArtifactSettings),
    )


def _pick(own: Any, default: Any, empty: Any) -> Any:
    if own is not None:
        return own
    if default is not None:
        return default
    return empty()
