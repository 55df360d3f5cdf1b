"""The plugin manager facade: the only place that calls pluggy hooks.

The core never calls ``pm.hook.*`` itself (tox 4's rule): it asks `Plugins` typed questions
(`mount_policy(registry)`, `existence_checker(registry, client)`, ...) and gets typed answers,
so hook names, keyword arguments and "nobody answered" handling live in one module.

Loading order (`Plugins.load`):

1. built-ins, listed in `BUILTIN_PLUGINS` and imported by module name; ``ocync_oci`` (the
   generic registry, fallback for every hook) is always registered;
2. third-party plugins from the entry-point group ``ocync``
   (``[project.entry-points.ocync] foo = "ocync_foo"``), registered under the entry point's name;
3. a check that every hookimpl matches a hook spec (a typo fails at start-up, naming the
   plugin and the hook, instead of being silently ignored).

``OCYNC_PLUGINS=a,b`` (or ``allow=``) restricts steps 1 and 2 to the named plugins (entry-point
name, module name of a built-in, or distribution name); ``ocync_oci`` always loads. Set but
empty, it loads no optional plugin (as datasette's ``DATASETTE_LOAD_PLUGINS``). A name that
matches no installed plugin is an error: a typo must not silently load nothing.

Plugin metadata convention (read by `Plugins.describe`, shown by ``ocync plugins``): a plugin
object (usually a module) may declare

- ``OCYNC_KINDS = ("ecr",)``: the registry kinds it serves. A kind declared here may be named
  in a registry's ``kind:`` setting; a plugin that claims registries through
  ``ocync_registry_kind`` should declare every kind it returns.
- ``OCYNC_HOSTS = ("*.dkr.ecr.*.amazonaws.com",)``: human-readable descriptions of the hosts it
  detects, for display only (detection is ``ocync_registry_kind``'s job).
- ``__version__``: used only for plugins that come from neither ocync nor a distribution.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from ocync_core import __version__ as OCYNC_VERSION
from ocync_core import hookspecs
from ocync_core.errors import BadInput, OcyncError
from ocync_core.hookspecs import PROJECT
from ocync_core.policies import (
    AuthProvider,
    ExistenceChecker,
    MountPolicy,
    PushOutcome,
    ReadPolicy,
    RepositoryPreparer,
    ThrottlePolicy,
    UploadStrategy,
)
from ocync_core.registry import split_registry_url

if TYPE_CHECKING:
    import click
    import httpx
    from pydantic import BaseModel

    from ocync_core.client import RegistryClient
    from ocync_core.digest import Digest
    from ocync_core.errors import RegistryError
    from ocync_core.registry import RegistrySettings

__all__ = [
    "ALLOW_ENV",
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "FALLBACK_KIND",
    "FALLBACK_PLUGIN",
    "PluginError",
    "PluginInfo",
    "Plugins",
    "make_plugin_manager",
]

# Module names of the built-in plugins (importable from plugins/). Order is registration
# order; pluggy calls later registrations first, and ocync_oci's hookimpls are trylast anyway.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "ocync_oci",
    "ocync_ecr",
    "ocync_dockerhub",
    "ocync_ghcr",
    "ocync_gar",
    "ocync_acr",
    "ocync_quay",
    "ocync_chainguard",
)
FALLBACK_PLUGIN = "ocync_oci"
FALLBACK_KIND = "oci"
ENTRY_POINT_GROUP = "ocync"
ALLOW_ENV = "OCYNC_PLUGINS"
# Our own distribution: if it ever lists built-ins as entry points, they are not third parties.
_OWN_DISTRIBUTION = "ocync"

_T = TypeVar("_T")


class PluginError(OcyncError):
    """A plugin could not be loaded, is inconsistent with the hook specs, or failed to answer."""


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin, as ``ocync plugins`` shows it."""

    name: str
    version: str
    kinds: tuple[str, ...]
    hooks: tuple[str, ...]
    builtin: bool
    hosts: tuple[str, ...] = ()


def make_plugin_manager() -> pluggy.PluginManager:
    """A pluggy manager that knows ocync's hook specs and has no plugin registered yet."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _normalize(name: str) -> str:
    # PEP 503 normalisation, so "ocync-tiny", "ocync_tiny" and "OCYNC.Tiny" are one name.
    return re.sub(r"[-_.]+", "-", name).lower()


def _allow_from_env() -> list[str] | None:
    raw = os.environ.get(ALLOW_ENV)
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _third_party_entry_points() -> list[importlib.metadata.EntryPoint]:
    # entry_points() already keeps one distribution per name (the first on sys.path), so a
    # plugin installed twice (site-packages and PYTHONPATH) is seen once.
    return [
        ep
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        if ep.dist is None or _normalize(ep.dist.name) != _OWN_DISTRIBUTION
    ]


def _string_tuple(plugin_name: str, plugin: object, attribute: str) -> tuple[str, ...]:
    value = getattr(plugin, attribute, ())
    if not isinstance(value, tuple | list) or not all(isinstance(v, str) for v in value):
        raise PluginError(
            f"plugin {plugin_name!r}: {attribute} must be a tuple of strings, got {value!r}"
        )
    return tuple(value)


class Plugins:
    """Typed access to the registered plugins. Build one with `Plugins.load()`."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm

    @property
    def manager(self) -> pluggy.PluginManager:
        """The underlying pluggy manager (for tests and ``ocync plugins``, not for the core)."""
        return self._pm

    # -- loading ----------------------------------------------------------------------------

    @classmethod
    def load(cls, allow: Iterable[str] | None = None, *, extra: Iterable[object] = ()) -> Plugins:
        """Register built-ins, then allowed entry-point plugins, then `extra` objects; check.

        :param allow: plugin names to load; None reads ``$OCYNC_PLUGINS`` (unset: load all).
        :param extra: plugin objects to register in-process (embedding, tests); not filtered.
        :raises BadInput: the allow-list names a plugin that is not installed.
        :raises PluginError: a plugin fails to import, clashes, or implements an unknown hook.
        """
        allowed = _allow_from_env() if allow is None else list(allow)
        pm = make_plugin_manager()
        entry_points = _third_party_entry_points()
        if allowed is not None:
            _check_allow_list(allowed, entry_points)
        wanted = None if allowed is None else {_normalize(a) for a in allowed}

        def is_allowed(*names: str) -> bool:
            return wanted is None or any(_normalize(n) in wanted for n in names)

        for module_name in BUILTIN_PLUGINS:
            if module_name == FALLBACK_PLUGIN or is_allowed(module_name):
                _register(pm, importlib.import_module(module_name), module_name, "built-in")

        for ep in entry_points:
            dist_name = ep.dist.name if ep.dist is not None else ""
            if not is_allowed(ep.name, dist_name):
                continue
            origin = f"distribution {dist_name!r}" if dist_name else "an entry point"
            if pm.has_plugin(ep.name):
                raise PluginError(
                    f"plugin {ep.name!r} from {origin} clashes with an already registered "
                    "plugin of the same name; uninstall one of them or rename its entry point"
                )
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} from {origin} failed to import {ep.value!r}: {exc!r}; "
                    f"fix or uninstall it, or leave it out of {ALLOW_ENV}"
                ) from exc
            _register(pm, plugin, ep.name, origin)

        for plugin in extra:
            # A readable name (pluggy's default is id()), unique if a class is given twice.
            base = getattr(plugin, "__name__", None) or type(plugin).__name__
            name, n = base, 1
            while pm.has_plugin(name):
                n += 1
                name = f"{base}#{n}"
            _register(pm, plugin, name, "the caller")

        plugins = cls(pm)
        plugins.check()
        return plugins

    def check(self) -> None:
        """Fail on a hookimpl that matches no hook spec (pluggy's ``check_pending``, with names).

        Also checks the ``OCYNC_KINDS``/``OCYNC_HOSTS`` declarations.
        """
        for hook_name, caller in vars(self._pm.hook).items():
            if hook_name.startswith("_") or not isinstance(caller, pluggy.HookCaller):
                continue
            if caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if not impl.optionalhook:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} implements {hook_name!r}, which is not an "
                        f"ocync hook (known hooks: {', '.join(hookspecs.HOOK_NAMES)}); "
                        "check its spelling or upgrade ocync"
                    )
        # pluggy's own check, in case its notion of "pending" grows beyond ours.
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from exc
        for name, plugin in self._pm.list_name_plugin():
            if plugin is not None:
                _string_tuple(name, plugin, "OCYNC_KINDS")
                _string_tuple(name, plugin, "OCYNC_HOSTS")

    def enable_tracing(self, write: Callable[[str], object]) -> Callable[[], None]:
        """Write every hook call and result through `write`; returns a function that stops it."""
        self._pm.trace.root.setwriter(write)
        return self._pm.enable_tracing()

    # -- kinds ------------------------------------------------------------------------------

    def known_kinds(self) -> list[str]:
        """Every kind some registered plugin declares in ``OCYNC_KINDS`` (always ``oci``)."""
        kinds = {FALLBACK_KIND}
        for name, plugin in self._pm.list_name_plugin():
            if plugin is not None:
                kinds.update(_string_tuple(name, plugin, "OCYNC_KINDS"))
        return sorted(kinds)

    def kind_for(self, registry: RegistrySettings) -> str:
        """The registry's kind: its explicit ``kind:``, else the first plugin claiming it, else oci.

        :raises BadInput: an explicit kind that no registered plugin declares.
        """
        if registry.kind is not None:
            known = self.known_kinds()
            if registry.kind not in known:
                close = difflib.get_close_matches(registry.kind, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise BadInput(
                    f"registry {registry.label}: kind {registry.kind!r} is not served by any "
                    f"loaded plugin (known kinds: {', '.join(known)}){hint}; install the plugin "
                    f"that provides it, or check {ALLOW_ENV}"
                )
            return registry.kind
        detected = self._pm.hook.ocync_registry_kind(registry=registry)
        if detected is None:
            return FALLBACK_KIND
        if not isinstance(detected, str) or not detected:
            raise PluginError(
                f"ocync_registry_kind returned {detected!r} for registry {registry.label}; "
                "expected a kind name or None"
            )
        return detected

    def resolve(self, registry: RegistrySettings) -> RegistrySettings:
        """A copy of `registry` with its kind filled in (detected kinds become explicit), and
        its endpoint, when the settings name none and a plugin knows it."""
        resolved = dataclasses.replace(registry, kind=self.kind_for(registry))
        endpoint = self.registry_endpoint(resolved)
        if endpoint != resolved.endpoint:
            resolved = dataclasses.replace(resolved, endpoint=endpoint)
        return resolved

    def registry_endpoint(self, registry: RegistrySettings) -> str | None:
        """Where requests go: the settings' own endpoint, else a plugin's, else None (the host).

        :raises PluginError: a plugin answered something that is not an http(s) base URL.
        """
        if registry.endpoint is not None:
            return registry.endpoint
        endpoint = self._pm.hook.ocync_registry_endpoint(
            registry=registry, kind=self.kind_for(registry)
        )
        if endpoint is None:
            return None
        try:
            scheme = split_registry_url(endpoint)[0] if isinstance(endpoint, str) else None
        except BadInput:
            scheme = None
        if scheme is None:
            raise PluginError(
                f"ocync_registry_endpoint returned {endpoint!r} for registry {registry.label}; "
                "expected an http(s)://host[:port] URL or None"
            )
        return endpoint

    def normalize_repository(self, registry: RegistrySettings, repository: str) -> str:
        """The registry's canonical name for `repository` (a plugin's, else `repository`).

        :raises PluginError: a plugin answered something that is not a non-empty string.
        """
        normalized = self._pm.hook.ocync_normalize_repository(
            registry=registry, kind=self.kind_for(registry), repository=repository
        )
        if normalized is None:
            return repository
        if not isinstance(normalized, str) or not normalized:
            raise PluginError(
                f"ocync_normalize_repository returned {normalized!r} for {repository!r} on "
                f"registry {registry.label}; expected a repository name or None"
            )
        return normalized

    # -- per-registry answers ---------------------------------------------------------------

    def auth_provider(self, registry: RegistrySettings, http: httpx.AsyncClient) -> AuthProvider:
        return self._first("ocync_auth_provider", AuthProvider, registry, http=http)

    def existence_checker(
        self, registry: RegistrySettings, client: RegistryClient
    ) -> ExistenceChecker:
        return self._first("ocync_existence_checker", ExistenceChecker, registry, client=client)

    def mount_policy(self, registry: RegistrySettings) -> MountPolicy:
        return self._first("ocync_mount_policy", MountPolicy, registry)

    def upload_strategy(self, registry: RegistrySettings) -> UploadStrategy:
        return self._first("ocync_upload_strategy", UploadStrategy, registry)

    def read_policy(self, registry: RegistrySettings) -> ReadPolicy:
        return self._first("ocync_read_policy", ReadPolicy, registry)

    def throttle_policy(self, registry: RegistrySettings) -> ThrottlePolicy:
        return self._first("ocync_throttle_policy", ThrottlePolicy, registry)

    def manifest_push_outcome(
        self, registry: RegistrySettings, error: RegistryError, wanted_digest: str | Digest
    ) -> PushOutcome | None:
        """A plugin's reading of a manifest-push error, or None: the error stands.

        None is the normal answer (the generic plugin never excuses an error), so it is not
        an error here, unlike the other per-registry hooks.
        """
        outcome = self._pm.hook.ocync_manifest_push_outcome(
            registry=registry,
            kind=self.kind_for(registry),
            error=error,
            wanted_digest=str(wanted_digest),
        )
        if outcome is not None and not isinstance(outcome, PushOutcome):
            raise PluginError(
                f"ocync_manifest_push_outcome returned {type(outcome).__name__} for registry "
                f"{registry.label}; expected PushOutcome or None"
            )
        return outcome

    def repository_preparer(self, registry: RegistrySettings) -> RepositoryPreparer | None:
        """The plugin's repository preparer, or None: repositories appear on push."""
        preparer = self._pm.hook.ocync_repository_preparer(
            registry=registry, kind=self.kind_for(registry)
        )
        if preparer is not None and not isinstance(preparer, RepositoryPreparer):
            raise PluginError(
                f"ocync_repository_preparer returned {type(preparer).__name__} for registry "
                f"{registry.label}, expected an object with `async ensure(repository)`"
            )
        return preparer

    def _first(
        self, hook_name: str, expected: type[_T], registry: RegistrySettings, **kw: Any
    ) -> _T:
        kind = self.kind_for(registry)
        caller = getattr(self._pm.hook, hook_name)
        result = caller(registry=registry, kind=kind, **kw)
        if result is None:
            raise PluginError(
                f"no plugin answered {hook_name} for registry {registry.label} (kind {kind!r}); "
                f"the generic plugin {FALLBACK_PLUGIN} answers every hook, so it must have "
                "been unregistered"
            )
        if not isinstance(result, expected):
            raise PluginError(
                f"{hook_name} returned {type(result).__name__} for registry {registry.label} "
                f"(kind {kind!r}); expected {expected.__name__}"
            )
        return result

    # -- configuration and CLI ---------------------------------------------------------------

    def registry_config_models(self) -> list[type[BaseModel]]:
        """Pydantic models of plugin-specific registry keys, one per plugin that has any."""
        from pydantic import BaseModel  # pydantic is imported by config anyway; keep load light

        models = self._pm.hook.ocync_registry_config_model()
        for model in models:
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise PluginError(
                    f"ocync_registry_config_model returned {model!r}; expected a pydantic "
                    "BaseModel subclass or None"
                )
        return list(models)

    def register_commands(self, cli: click.Group) -> None:
        self._pm.hook.ocync_register_commands(cli=cli)

    # -- introspection ----------------------------------------------------------------------

    def describe(self) -> list[PluginInfo]:
        """Every registered plugin, in registration order, for ``ocync plugins``."""
        versions: dict[str, str] = {}
        for ep in _third_party_entry_points():
            if ep.dist is not None:
                versions.setdefault(ep.name, ep.dist.version)
        infos: list[PluginInfo] = []
        for name, plugin in self._pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            builtin = name in BUILTIN_PLUGINS
            if builtin:
                version = OCYNC_VERSION
            else:
                version = versions.get(name) or str(getattr(plugin, "__version__", "unknown"))
            callers = self._pm.get_hookcallers(plugin) or []
            infos.append(
                PluginInfo(
                    name=name,
                    version=version,
                    kinds=_string_tuple(name, plugin, "OCYNC_KINDS"),
                    hooks=tuple(sorted(caller.name for caller in callers)),
                    builtin=builtin,
                    hosts=_string_tuple(name, plugin, "OCYNC_HOSTS"),
                )
            )
        return infos


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None, origin: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        shown = name or repr(plugin)
        raise PluginError(f"plugin {shown!r} from {origin} is invalid: {exc}") from exc
    except ValueError as exc:  # pluggy: name already registered, or the same object twice
        shown = name or repr(plugin)
        raise PluginError(f"plugin {shown!r} from {origin}: {exc}") from exc


def _check_allow_list(
    allowed: list[str], entry_points: list[importlib.metadata.EntryPoint]
) -> None:
    available = {_normalize(n): n for n in BUILTIN_PLUGINS}
    for ep in entry_points:
        available.setdefault(_normalize(ep.name), ep.name)
        if ep.dist is not None:
            available.setdefault(_normalize(ep.dist.name), ep.dist.name)
    unknown = [a for a in allowed if _normalize(a) not in available]
    if unknown:
        raise BadInput(
            f"{ALLOW_ENV} names plugins that are not installed: {', '.join(unknown)} "
            f"(available: {', '.join(sorted(set(available.values())))})"
        )
