"""The Python API: what the CLI does, callable from code. The CLI is a thin layer over this."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ocync_core.client import RegistryClient
from ocync_core.copy import CopyResult, copy_image
from ocync_core.errors import single_errors
from ocync_core.plugins import Plugins
from ocync_core.reference import Reference
from ocync_core.registry import RegistrySettings

if TYPE_CHECKING:
    from ocync_core.config import Config
    from ocync_core.report import ImageResult, SyncReport

__all__ = ["copy", "open_clients", "sync"]


@asynccontextmanager
async def open_clients(
    *settings: RegistrySettings, plugins: Plugins | None = None
) -> AsyncIterator[list[RegistryClient]]:
    """One client per distinct registry; settings naming the same registry share a client.

    Sharing matters: a mount within one registry needs one auth state for both repositories.
    """
    plugins = plugins or Plugins.load()
    distinct: list[RegistryClient] = []
    clients: list[RegistryClient] = []
    try:
        for item in settings:
            # Settings hold a mapping, so they are compared, not hashed.
            same = next((c for c in distinct if c.settings == item), None)
            if same is None:
                same = RegistryClient(item, plugins)
                distinct.append(same)
            clients.append(same)
        yield clients
    finally:
        for client in distinct:
            await client.aclose()


async def copy(
    source: str | Reference,
    target: str | Reference,
    *,
    source_settings: RegistrySettings | None = None,
    target_settings: RegistrySettings | None = None,
    plugins: Plugins | None = None,
) -> CopyResult:
    """Copy one image (or a whole index) from `source` to `target`.

    Settings default to the bare registry of each reference; when given, their `host` is
    replaced by the reference's domain so a reference and its settings cannot disagree.
    """
    src = source if isinstance(source, Reference) else Reference.parse(source)
    dst = target if isinstance(target, Reference) else Reference.parse(target)
    src_settings = replace(source_settings or RegistrySettings(host=src.domain), host=src.domain)
    dst_settings = replace(target_settings or RegistrySettings(host=dst.domain), host=dst.domain)
    with single_errors():
        async with open_clients(src_settings, dst_settings, plugins=plugins) as clients:
            return await copy_image(clients[0], src, clients[1], dst)


async def sync(
    config: Config | str | Path,
    *,
    plugins: Plugins | None = None,
    dry_run: bool = False,
    on_result: Callable[[ImageResult], None] | None = None,
    on_discovered: Callable[[int], None] | None = None,
) -> SyncReport:
    """Sync every mapping of a config (an object, or the path of a YAML file)."""
    from ocync_core.config import load_config
    from ocync_core.engine import SyncOptions, run_sync

    plugins = plugins or Plugins.load()
    if isinstance(config, str | Path):
        config = load_config(config, plugins)
    options = SyncOptions(dry_run=dry_run, on_result=on_result, on_discovered=on_discovered)
    return await run_sync(config, plugins=plugins, options=options)
