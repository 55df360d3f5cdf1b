"""Headers a registry answers with that are malformed or hostile, answered through a FaultProxy.

`WWW-Authenticate` (broken grammar, unknown scheme, no realm, a realm at a cloud metadata
address or on another domain), `Link` (garbage, another host) and `Retry-After` (negative,
huge, garbage, dates): each ends in a clear error or a bounded wait, and no request goes where
none should. A small recording server stands for "another host": it must see no request, or
none carrying the registry's credentials.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import trio
from click.testing import CliRunner

from ocync_conformance.fixtures import TEST_PASSWORD, TEST_USERNAME
from ocync_conformance.proxy import FaultProxy, ProxyAction
from ocync_conformance.registry_process import RegistryProcess
from ocync_core.auth.challenge import MalformedChallenge
from ocync_core.cli import cli
from ocync_core.client import RegistryClient
from ocync_core.config import parse_config
from ocync_core.engine import SyncOptions, run_sync
from ocync_core.errors import EXIT_AUTH, AuthenticationError, CredentialPolicyError
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings
from ocync_core.retry import RetryPolicy

# -- a host that is not the registry ----------------------------------------------------------


@dataclass
class Recorder:
    """An HTTP server on every interface that records what reaches it and answers 200."""

    server: ThreadingHTTPServer
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, host: str) -> str:
        return f"http://{host}:{self.port}"


def _recording_handler(seen: list[tuple[str, str, str | None]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.command, self.path, self.headers.get("Authorization")))
            body = json.dumps({"name": "x", "tags": [], "token": "recorded"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    seen: list[tuple[str, str, str | None]] = []
    recorder = Recorder(ThreadingHTTPServer(("0.0.0.0", 0), _recording_handler(seen)), seen)
    thread = threading.Thread(target=recorder.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        recorder.server.shutdown()
        recorder.server.server_close()
        thread.join()


@pytest.fixture
def foreign_host(recorder: Recorder) -> str:
    """This machine under a name that is neither the registry's nor a loopback name.

    The recorder must be reachable there, or "it saw nothing" would prove nothing.
    """
    name = socket.gethostname()
    with httpx.Client() as http:
        assert http.get(recorder.url(name)).status_code == 200, f"{name} does not reach us"
    recorder.seen.clear()
    return name


@pytest.fixture(scope="module")
def upstream(registry_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with RegistryProcess(workdir=tmp_path_factory.mktemp("headers")) as registry:
        yield registry.url


def fresh(proxy: FaultProxy) -> FaultProxy:
    """The proxy without the previous check's rules and log."""
    proxy.wait_idle()
    proxy.clear_faults()
    proxy.reset()
    return proxy


@pytest.fixture(scope="module")
def proxies(upstream: str) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    with (
        FaultProxy(upstream, name="answering-bad-headers") as proxy,
        FaultProxy(upstream, name="target") as target,
    ):
        yield proxy, target


@pytest.fixture
def proxy(proxies: tuple[FaultProxy, FaultProxy]) -> FaultProxy:
    """An open registry behind a proxy that answers what each check tells it to."""
    return fresh(proxies[0])


@pytest.fixture
def target(proxies: tuple[FaultProxy, FaultProxy]) -> FaultProxy:
    """The same registry behind a second proxy, untouched: a copy's target."""
    return fresh(proxies[1])


@pytest.fixture
def no_docker_config(tmp_path: Path) -> str:
    """A Docker config without credentials: the developer's own must not take part."""
    path = tmp_path / "config.json"
    path.write_text("{}")
    return str(path)


def client_for(settings: RegistrySettings) -> tuple[RegistryClient, list[httpx.URL]]:
    """A client with the built-in plugins, and every URL it sends a request to."""
    client = RegistryClient(settings, Plugins.load())
    sent: list[httpx.URL] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.url)

    client.http.event_hooks["request"].append(record)
    return client, sent


# -- WWW-Authenticate -------------------------------------------------------------------------

CHALLENGES = {
    "unterminated-quote": (
        'Bearer realm="https://auth.example/token,service="registry',
        "malformed WWW-Authenticate header",
    ),
    "missing-value": ('Bearer realm="https://a.example/", service=', "expected a parameter value"),
    "no-scheme": ('="x"', "expected an authentication scheme"),
    "realm-twice": (
        'Bearer realm="https://a.example/",realm="https://b.example/"',
        "parameter 'realm' given twice",
    ),
    "empty": ("", "no challenge"),
    "unknown-scheme": ("Negotiate c29tZXRoaW5n", "-> 401"),
    "missing-realm": ('Bearer service="registry"', "Bearer challenge without a realm"),
    "non-http-realm": ('Bearer realm="file:///etc/passwd"', "is not an http(s) URL"),
}


@pytest.mark.parametrize("case", CHALLENGES.values(), ids=list(CHALLENGES))
def test_bad_challenge_is_an_auth_error_after_few_requests(
    proxy: FaultProxy, target: FaultProxy, case: tuple[str, str]
):
    header, problem = case
    proxy.fail(None, 401, headers={"WWW-Authenticate": header})
    done = CliRunner().invoke(
        cli, ["copy", f"{proxy.host}/bad/app:v1", f"{target.host}/mirror/app:v1"]
    )
    assert done.exit_code == EXIT_AUTH, done.output
    assert problem in done.stderr, done.stderr
    target.wait_idle()
    writes = [r for r in target.log if r.method not in ("GET", "HEAD")]
    assert not writes, f"the target was written to although the source refused: {writes}"
    proxy.wait_idle()
    # The probe, and at most the HEAD it was for: a bad challenge is not a reason to retry.
    assert len(proxy.log) <= 2, [(r.method, r.path) for r in proxy.log]


async def test_bad_challenge_error_quotes_the_header_briefly(proxy: FaultProxy):
    proxy.fail(None, 401, headers={"WWW-Authenticate": 'Bearer realm="' + "x" * 5000})
    client, _ = client_for(RegistrySettings(host=proxy.host, url=proxy.url))
    async with client:
        with pytest.raises(MalformedChallenge) as caught:
            await client.head_manifest("bad/app", "v1")
    assert len(str(caught.value)) < 400 and "..." in str(caught.value)


# -- token realms -----------------------------------------------------------------------------

METADATA_REALMS = {
    "aws": "http://169.254.169.254/latest/api/token",
    "aws-ipv6": "http://[fd00:ec2::254]/latest/api/token",
    "gcp": "http://metadata.google.internal/computeMetadata/v1/token",
    "alibaba": "http://100.100.100.200/latest/meta-data/",
    "ipv4-mapped": "http://[::ffff:169.254.169.254]/",
    # 169.254.169.254 as the C resolver also reads it: one number, hex, dotted hex, short form
    "decimal": "http://2852039166/latest/api/token",
    "hex": "http://0xa9fea9fe/latest/api/token",
    "dotted-hex": "http://0xa9.0xfe.0xa9.0xfe/",
    "short": "http://169.254.43518/",
    "nat64": "http://[64:ff9b::a9fe:a9fe]/",
}


@pytest.mark.parametrize("with_credentials", [False, True], ids=["anonymous", "credentials"])
@pytest.mark.parametrize("realm", METADATA_REALMS.values(), ids=list(METADATA_REALMS))
async def test_metadata_realm_is_refused_without_a_request_to_it(
    proxy: FaultProxy, no_docker_config: str, realm: str, with_credentials: bool
):
    proxy.fail(None, 401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="r"'})
    credentials = {"username": "u", "password": "p"} if with_credentials else {}
    settings = RegistrySettings(
        host=proxy.host, url=proxy.url, docker_config=no_docker_config, **credentials
    )
    client, sent = client_for(settings)
    async with client:
        with pytest.raises(CredentialPolicyError, match="metadata address; refusing to contact"):
            await client.head_manifest("bad/app", "v1")
    assert {url.netloc.decode() for url in sent} == {proxy.host}, f"requests went to: {sent}"


@pytest.mark.parametrize(
    ("scheme", "problem"),
    [
        ("https", "is on another domain than the registry; refusing to send credentials"),
        ("http", "is plain HTTP to a non-local host; refusing to send credentials"),
    ],
    ids=["https", "http"],
)
async def test_realm_elsewhere_gets_no_credentials_and_no_request(
    proxy: FaultProxy,
    recorder: Recorder,
    foreign_host: str,
    no_docker_config: str,
    scheme: str,
    problem: str,
):
    realm = f"{scheme}://{foreign_host}:{recorder.port}/token"
    proxy.fail(None, 401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="r"'})
    settings = RegistrySettings(
        host="registry.example.test",  # the registry's identity; requests go to the proxy
        endpoint=proxy.url,
        username=TEST_USERNAME,
        password=TEST_PASSWORD,
        docker_config=no_docker_config,
    )
    client, sent = client_for(settings)
    async with client:
        with pytest.raises(CredentialPolicyError, match=problem):
            await client.head_manifest("bad/app", "v1")
    assert recorder.seen == [], "the foreign realm was contacted"
    assert {url.host for url in sent} == {"127.0.0.1"}


async def test_realm_elsewhere_is_asked_anonymously_without_credentials(
    proxy: FaultProxy, recorder: Recorder, foreign_host: str, no_docker_config: str
):
    """The counterpart: with nothing to leak, a realm on another host may issue a token."""
    realm = f"{recorder.url(foreign_host)}/token"
    proxy.fail(None, 401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="r"'})
    client, _ = client_for(
        RegistrySettings(host=proxy.host, url=proxy.url, docker_config=no_docker_config)
    )
    async with client:
        with pytest.raises(AuthenticationError, match="-> 401"):
            await client.head_manifest("bad/app", "v1")
    assert recorder.seen, "an anonymous token request was expected"
    assert all(authorization is None for _, _, authorization in recorder.seen)


# -- Link -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _basic(registry_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProxy]:
    with (
        RegistryProcess(
            workdir=tmp_path_factory.mktemp("basic"), username=TEST_USERNAME, password=TEST_PASSWORD
        ) as registry,
        FaultProxy(registry, name="basic") as proxy,
    ):
        yield proxy


@pytest.fixture
def basic(_basic: FaultProxy) -> FaultProxy:
    """A Basic-auth registry behind a proxy: every request ocync sends it carries a password."""
    return fresh(_basic)


def first_page_links_to(proxy: FaultProxy, link: str) -> None:
    body = json.dumps({"name": "app", "tags": ["v1"]}).encode()
    proxy.fail(ProxyAction.TAG_LIST, 200, body=body, headers={"Link": link}, count=1)


def basic_client(proxy: FaultProxy) -> tuple[RegistryClient, list[httpx.URL]]:
    return client_for(
        RegistrySettings(
            host=proxy.host, url=proxy.url, username=TEST_USERNAME, password=TEST_PASSWORD
        )
    )


async def test_link_to_another_host_never_carries_the_credentials(
    basic: FaultProxy, recorder: Recorder, foreign_host: str
):
    first_page_links_to(
        basic, f'<{recorder.url(foreign_host)}/v2/app/tags/list?last=v1>; rel="next"'
    )
    client, _ = basic_client(basic)
    async with client:
        assert await client.list_tags("app") == ["v1"]
    assert [authorization for _, _, authorization in recorder.seen] in ([], [None]), (
        "the registry's credentials went to the host a Link header named"
    )


async def test_link_to_another_port_never_carries_the_credentials(
    basic: FaultProxy, recorder: Recorder
):
    first_page_links_to(
        basic, f'<{recorder.url("127.0.0.1")}/v2/app/tags/list?last=v1>; rel="next"'
    )
    client, _ = basic_client(basic)
    async with client:
        await client.list_tags("app")
    assert [authorization for _, _, authorization in recorder.seen] in ([], [None]), (
        "the registry's credentials went to another port named by a Link header"
    )


@pytest.mark.parametrize(
    "link",
    ["garbage", '<>; rel="prev"', "</v2/app/tags/list?last=v1>", '<; rel="next"'],
    ids=["garbage", "no-next", "no-rel", "unterminated"],
)
async def test_link_without_a_next_page_ends_the_listing(basic: FaultProxy, link: str):
    first_page_links_to(basic, link)
    client, sent = basic_client(basic)
    async with client:
        assert await client.list_tags("app") == ["v1"]
    assert sum(url.path.endswith("/tags/list") for url in sent) == 1


async def test_link_that_is_no_url_fails_its_mapping_with_a_clear_error(
    basic: FaultProxy, upstream: str
):
    first_page_links_to(basic, '<http://[::1>; rel="next"')
    doc = {
        "global": {"cache": False},
        "registries": {
            "src": {
                "url": basic.url,
                "credentials": {"username": TEST_USERNAME, "password": TEST_PASSWORD},
            },
            "dst": {"url": upstream},
        },
        "mappings": [{"from": "app", "to": "mirror", "source": "src", "targets": "dst"}],
    }
    plugins = Plugins.load()
    config = parse_config(doc, plugins=plugins, env={})
    report = await run_sync(config, plugins=plugins, options=SyncOptions(handle_signals=False))
    assert any("Link" in error or "link" in error for error in report.errors), report.errors


# -- Retry-After ------------------------------------------------------------------------------

UNUSABLE_RETRY_AFTER = {
    "negative": "-5",
    "huge": "99999999999",
    "garbage": "soon",
    "exponent": "1e9",
    "hex": "0x10",
    "empty": "",
    "date-in-the-past": "Wed, 21 Oct 2015 07:28:00 GMT",
    "date-beyond-a-day": "Fri, 01 Jan 2100 00:00:00 GMT",
}


@pytest.mark.parametrize("value", UNUSABLE_RETRY_AFTER.values(), ids=list(UNUSABLE_RETRY_AFTER))
async def test_unusable_retry_after_falls_back_to_backoff(proxy: FaultProxy, value: str):
    proxy.fail(ProxyAction.MANIFEST_HEAD, 429, count=1, headers={"Retry-After": value})
    client, _ = client_for(RegistrySettings(host=proxy.host, url=proxy.url))
    client.retry_policy = RetryPolicy(base=0.05, max_delay=0.2)
    async with client:
        started = trio.current_time()
        with trio.fail_after(10):
            assert await client.head_manifest("bad/app", "v1") is None
        waited = trio.current_time() - started
    proxy.wait_idle()
    assert proxy.count(ProxyAction.MANIFEST_HEAD) == 2, "the 429 was not retried once"
    assert waited < 2, f"Retry-After {value!r} held the request for {waited:.1f}s"


async def test_usable_retry_after_is_honoured(proxy: FaultProxy):
    """The counterpart: a sane value is waited for, so the fast cases above mean something."""
    proxy.fail(ProxyAction.MANIFEST_HEAD, 429, count=1, headers={"Retry-After": "1"})
    client, _ = client_for(RegistrySettings(host=proxy.host, url=proxy.url))
    client.retry_policy = RetryPolicy(base=0.05, max_delay=0.2)
    async with client:
        started = trio.current_time()
        assert await client.head_manifest("bad/app", "v1") is None
        assert trio.current_time() - started >= 1
