"""The `ocync` command line: a thin layer of click commands over `ocync_core.api`.

Exit codes: 0 success, 1 partial (some images or conformance checks failed), 2 failure, 3 bad
input, 4 authentication refused.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click
import httpx
import trio

from ocync_core import __version__, api
from ocync_core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, BadInput, OcyncError, single_errors
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings
from ocync_core.report import human_size

__all__ = ["cli", "main"]

T = TypeVar("T")
log = logging.getLogger("ocync")
_SDK_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "google.auth", "azure")


def _configure_logging(verbose: int, quiet: int, log_format: str = "text") -> None:
    from ocync_core.logs import configure_logging

    configure_logging(verbose, quiet, log_format)
    # Cloud SDKs log request headers and response bodies at DEBUG: botocore prints the
    # token GetAuthorizationToken returns. No verbosity may show them.
    for sdk in _SDK_LOGGERS:
        logging.getLogger(sdk).setLevel(logging.WARNING)


def _run(func: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run a coroutine under trio, turning our errors into exit codes and clear messages."""
    try:
        with single_errors():
            return trio.run(func, *args)
    except OcyncError as exc:
        _fail(str(exc), exc.exit_code)
    except httpx.HTTPError as exc:
        _fail(f"{type(exc).__name__}: {exc}", EXIT_FAILURE)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    raise AssertionError("unreachable")


def _fail(message: str, code: int) -> None:
    _error(message, prefix="ocync: error: ", exit_code=code)
    sys.exit(code)


def _plugins() -> Plugins:
    """The plugins `main` loaded (loading them twice would double the start-up time), or a
    fresh load when the command group runs without `main` (tests, embedding)."""
    context = click.get_current_context(silent=True)
    loaded = context.find_object(Plugins) if context is not None else None
    return loaded if loaded is not None else Plugins.load()


def _error(message: str, *, prefix: str, **fields: object) -> None:
    """An error line on stderr; a log record when the logs are JSON, so stderr stays JSON."""
    from ocync_core.logs import json_logging

    if json_logging():
        log.error("%s", message, extra=fields)
    else:
        click.echo(f"{prefix}{message}", err=True)


def _credentials(value: str | None, flag: str) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise BadInput(f"{flag}: expected USER:PASSWORD")
    return user, password


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ocync")
@click.option("-v", "--verbose", count=True, help="Debug logs (-vv: every request too).")
@click.option("-q", "--quiet", count=True, help="Warnings and errors only (-qq: errors only).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="OCYNC_LOG_FORMAT",
    show_default=True,
    help="Logs on stderr as text, or as one JSON object per line (env OCYNC_LOG_FORMAT).",
)
def cli(verbose: int, quiet: int, log_format: str) -> None:
    """Mirror OCI container images between registries."""
    _configure_logging(verbose, quiet, log_format)


def _side_options(side: str, label: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The per-registry options of one side of a copy (`src` or `dest`)."""
    env = side.upper()
    options = [
        click.option(
            f"--{side}-creds",
            envvar=f"OCYNC_{env}_CREDS",
            metavar="USER:PASSWORD",
            help=f"Credentials for the {label} registry (env OCYNC_{env}_CREDS).",
        ),
        click.option(
            f"--{side}-token",
            envvar=f"OCYNC_{env}_TOKEN",
            metavar="TOKEN",
            help=f"A bearer token for the {label} registry (env OCYNC_{env}_TOKEN).",
        ),
        click.option(
            f"--{side}-tls-verify/--no-{side}-tls-verify",
            default=True,
            help=f"Verify the {label} registry's TLS certificate.",
        ),
        click.option(
            f"--{side}-ca-file",
            type=click.Path(exists=True, dir_okay=False),
            help=f"CA bundle for the {label} registry.",
        ),
        click.option(
            f"--{side}-insecure-http",
            is_flag=True,
            help=f"Use plain HTTP for the {label} registry.",
        ),
        click.option(
            f"--{side}-endpoint",
            metavar="URL",
            help=f"Send {label} requests to this URL instead of the registry's host.",
        ),
        click.option(
            f"--{side}-kind",
            metavar="KIND",
            help=f"The {label} registry's kind, overriding detection.",
        ),
    ]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _settings(
    host: str, options: dict[str, Any], side: str, docker_config: str | None
) -> RegistrySettings:
    user, password = _credentials(options[f"{side}_creds"], f"--{side}-creds")
    return RegistrySettings(
        host=host,
        kind=options[f"{side}_kind"],
        endpoint=options[f"{side}_endpoint"],
        tls_verify=options[f"{side}_tls_verify"],
        ca_file=options[f"{side}_ca_file"],
        insecure_http=options[f"{side}_insecure_http"],
        username=user,
        password=password,
        token=options[f"{side}_token"],
        docker_config=docker_config,
    )


@cli.command("copy")
@click.argument("source")
@click.argument("target")
@_side_options("src", "source")
@_side_options("dest", "target")
@click.option(
    "--docker-config",
    type=click.Path(dir_okay=False),
    help="Docker config.json with credentials (default: $DOCKER_CONFIG or ~/.docker).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result.")
def copy_command(
    source: str, target: str, docker_config: str | None, as_json: bool, **options: Any
) -> None:
    """Copy one image, or a whole multi-arch index, from SOURCE to TARGET.

    \b
    Examples:
      ocync copy 127.0.0.1:5000/app:v1 127.0.0.1:5001/app:v1
      ocync copy ghcr.io/org/tool:1.2 registry.example.com/mirror/tool
    """
    from ocync_core.reference import Reference

    try:
        src = Reference.parse(source)
        dst = Reference.parse(target)
        src_settings = _settings(src.domain, options, "src", docker_config)
        dst_settings = _settings(dst.domain, options, "dest", docker_config)
    except BadInput as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
        return
    result = _run(_copy, src, dst, src_settings, dst_settings)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
        return
    click.echo(_describe(result))


async def _copy(
    src: Any, dst: Any, src_settings: RegistrySettings, dst_settings: RegistrySettings
) -> api.CopyResult:
    return await api.copy(src, dst, source_settings=src_settings, target_settings=dst_settings)


def _describe(result: api.CopyResult) -> str:
    digest = result.digest[:19]
    if result.status == "skipped":
        return f"up to date {result.target} {digest} ({result.reason})"
    kind = (
        f"index of {len(result.platforms)} ({', '.join(result.platforms)})"
        if result.platforms
        else "image"
    )
    blobs = result.blobs
    return (
        f"copied {result.source} -> {result.target} {digest} [{kind}; "
        f"{result.manifests_pushed} manifests, {blobs.transferred} blobs transferred "
        f"({human_size(blobs.bytes)}), {blobs.mounted} mounted, {blobs.skipped} present; "
        f"{result.duration:.2f}s]"
    )


_shard_option = click.option(
    "--shard",
    metavar="I/N",
    envvar="OCYNC_SHARD",
    help="Sync only shard I of N (0 <= I < N): N processes split the mappings with no "
    "overlap and no coordination; each keeps its own cache (env OCYNC_SHARD).",
)


@cli.command("sync")
@click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The mirror configuration (YAML).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be synced; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout.")
@_shard_option
def sync_command(config_path: str, dry_run: bool, as_json: bool, shard: str | None) -> None:
    """Sync every mapping of a config: the target ends with the source's digests.

    Prints one line per image synced or failed (none per image already in sync), then a
    summary. Exit codes: 0 all good, 1 some images failed, 2 all failed, 3 bad config,
    4 authentication refused.
    """
    from ocync_core.config import load_config
    from ocync_core.sharding import Shard, shard_config

    plugins = _plugins()
    try:
        part = Shard.parse(shard) if shard is not None else None
        config = load_config(config_path, plugins)
    except OcyncError as exc:
        _fail(str(exc), exc.exit_code)
        return
    if part is not None:
        every = len(config.mappings)
        config = shard_config(config, part)
        log.info("shard %s: %d of %d mappings", part, len(config.mappings), every)

    from ocync_core.logs import json_logging
    from ocync_core.progress import SyncProgress

    # A live display would interleave with JSON log lines: only for people reading stderr.
    with SyncProgress(enabled=False if as_json or json_logging() else None) as progress:

        def show(result: Any) -> None:
            progress.finished(result)
            if not as_json and result.status != "skipped":
                progress.print(result.line())

        report = _run(_sync, config, plugins, dry_run, show, progress.discovered)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for error in report.errors:
            _error(error, prefix="error: ")
        click.echo(report.summary())
    sys.exit(report.exit_code)


async def _sync(
    config: Any,
    plugins: Plugins,
    dry_run: bool,
    show: Callable[[Any], None],
    discovered: Callable[[int], None],
) -> Any:
    return await api.sync(
        config, plugins=plugins, dry_run=dry_run, on_result=show, on_discovered=discovered
    )


@cli.command("watch")
@click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The mirror configuration (YAML), read again every cycle and on SIGHUP.",
)
@click.option(
    "--interval",
    default="5m",
    show_default=True,
    metavar="DURATION",
    help="Pause between the end of a sync and the start of the next (90s, 5m, 1h30m).",
)
@click.option(
    "--listen",
    default=":9090",
    show_default=True,
    envvar="OCYNC_LISTEN",
    metavar="HOST:PORT",
    help="Address of /healthz, /readyz and /metrics (env OCYNC_LISTEN).",
)
@_shard_option
def watch_command(config_path: str, interval: str, listen: str, shard: str | None) -> None:
    """Sync, sleep, repeat: a long-running mirror with health and Prometheus endpoints.

    SIGHUP re-reads the config (an invalid one keeps the previous one in force);
    SIGTERM/SIGINT stop after the cycle in flight drains (global.drain_deadline). Exit
    codes: 0 stopped by a signal, 2 cannot listen, 3 bad input or config at start.
    """
    from pathlib import Path

    from ocync_core.health import parse_listen
    from ocync_core.sharding import Shard
    from ocync_core.watch import WatchOptions, parse_interval, watch

    try:
        host, port = parse_listen(listen)
        options = WatchOptions(
            config_path=Path(config_path),
            interval=parse_interval(interval),
            host=host,
            port=port,
            shard=Shard.parse(shard) if shard is not None else None,
        )
    except OcyncError as exc:
        _fail(str(exc), exc.exit_code)
        return
    _run(watch, options)


@cli.command("validate")
@click.argument("config_path", type=click.Path(dir_okay=False))
def validate_command(config_path: str) -> None:
    """Check a config offline: syntax, keys, types, aliases, filters."""
    from ocync_core.config import load_config

    try:
        config = load_config(config_path, _plugins())
    except OcyncError as exc:
        _fail(str(exc), exc.exit_code)
        return
    targets = {t.alias for m in config.mappings for t in m.targets}
    click.echo(
        f"{config_path}: valid ({len(config.registries)} registries, "
        f"{len(config.mappings)} mappings, {len(targets)} targets)"
    )


@cli.command("schema")
def schema_command() -> None:
    """Print the config's JSON Schema (with the keys plugins add to registries)."""
    from ocync_core.config import config_json_schema

    click.echo(json.dumps(config_json_schema(_plugins()), indent=2))


@cli.command("expand")
@click.argument("config_path", type=click.Path(dir_okay=False))
@click.option("--show-secrets", is_flag=True, help="Print secrets instead of ***.")
def expand_command(config_path: str, show_secrets: bool) -> None:
    """Print the config with ${VARIABLES} resolved (secrets redacted unless asked)."""
    import yaml

    from ocync_core.config import load_config

    try:
        config = load_config(config_path, _plugins())
    except OcyncError as exc:
        _fail(str(exc), exc.exit_code)
        return
    click.echo(yaml.safe_dump(config.expand(redact=not show_secrets), sort_keys=False))


@cli.command("tags")
@click.argument("repository")
@click.option("--glob", "globs", multiple=True, help="Keep tags matching this glob (repeatable).")
@click.option("--semver", help="Keep tags in this version range, e.g. '>=1.2 <2'.")
@click.option("--exclude", multiple=True, help="Drop tags matching this glob (repeatable).")
@click.option("--sort", type=click.Choice(["semver", "alpha"]), help="Order of the result.")
@click.option("--latest", type=int, help="Keep the last N after sorting.")
@_side_options("src", "source")
def tags_command(repository: str, globs: tuple[str, ...], semver: str | None,
                 exclude: tuple[str, ...], sort: str | None, latest: int | None,
                 **options: Any) -> None:  # fmt: skip
    """Preview a tag filter against a repository's tags (REPOSITORY as host/path)."""
    from ocync_core.filters import TagRules, select_tags
    from ocync_core.reference import Reference

    try:
        ref = Reference.parse(repository)
        rules = TagRules(glob=globs, semver=semver, exclude=exclude, sort=sort, latest=latest)
        select_tags([], rules)  # validates the rules before any request
        settings = _settings(ref.domain, options, "src", None)
    except BadInput as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
        return
    tags = _run(_list_tags, settings, ref.repository)
    for tag in select_tags(tags, rules):
        click.echo(tag)


async def _list_tags(settings: RegistrySettings, repository: str) -> list[str]:
    async with api.open_clients(settings) as (client,):
        return await client.list_tags(repository)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable list.")
def plugins_command(as_json: bool) -> None:
    """List the plugins that are loaded: versions, kinds, the hosts they claim, hooks."""
    try:
        infos = _plugins().describe()
    except OcyncError as exc:
        _fail(str(exc), exc.exit_code)
        return
    if as_json:
        click.echo(json.dumps([info.__dict__ for info in infos], indent=2, default=list))
        return
    for info in infos:
        origin = "built-in" if info.builtin else "third-party"
        kinds = ", ".join(info.kinds) or "(fallback)"
        click.echo(f"{info.name} {info.version} [{origin}] kinds: {kinds}")
        if info.hosts:
            click.echo(f"    hosts: {', '.join(info.hosts)}")
        click.echo(f"    hooks: {', '.join(info.hooks)}")


@cli.command("conformance")
@click.argument("plugin", default="ocync_oci")
@click.option("--registry", metavar="URL", help="Test against this running registry instead.")
@click.option("--environment", metavar="NAME", help="The conformance environment to start.")
@click.option("--kind", metavar="KIND", help="The registry kind to test (default: the plugin's).")
@click.option("-k", "keyword", metavar="EXPR", help="Only the checks matching EXPR (as pytest).")
@click.option("--junit-xml", type=click.Path(dir_okay=False), help="Also write a JUnit XML report.")
def conformance_command(
    plugin: str,
    registry: str | None,
    environment: str | None,
    kind: str | None,
    keyword: str | None,
    junit_xml: str | None,
) -> None:
    """Run the conformance suite for PLUGIN (default: the generic ocync_oci).

    Starts a local registry for the plugin's kind (or uses --registry), runs every check and
    prints the capabilities used and the results per group of checks. Exit codes: 0 all
    passed or skipped, 1 some check failed, 2 the suite could not run, 3 bad input.
    """
    import importlib.util

    missing = [m for m in ("pytest", "pytest_trio") if importlib.util.find_spec(m) is None]
    if missing:
        _fail(
            f"ocync conformance needs {' and '.join(missing)}: pip install 'ocync[conformance]'",
            EXIT_FAILURE,
        )
    from ocync_conformance.runner import render, run_conformance
    from ocync_conformance.selected import select_plugin

    try:
        selection = select_plugin(plugin, kind=kind, environment=environment)
    except OcyncError as exc:
        _fail(str(exc), exc.exit_code)
        return
    run = run_conformance(selection, registry=registry, keyword=keyword, junit_xml=junit_xml)
    if run.checks or run.broken:
        click.echo()
        click.echo(render(run))
    if run.broken:
        _fail("the conformance suite could not run", EXIT_FAILURE)
    if run.refusal:
        _fail(run.refusal, EXIT_BAD_INPUT)
    if run.failed or run.pytest_status != 0:
        checks_failed = 1  # as `ocync sync` when some images failed
        where = f"registry {registry}" if registry else f"environment {selection.environment}"
        _fail(
            f"{len(run.failed)} conformance check(s) failed for plugin {selection.plugin} "
            f"against {where}",
            checks_failed,
        )


def main() -> None:
    """Console-script entry point."""
    try:
        plugins = Plugins.load()
        plugins.register_commands(cli)
    except OcyncError as exc:
        _fail(str(exc), exc.exit_code)
    cli(prog_name="ocync", obj=plugins)
