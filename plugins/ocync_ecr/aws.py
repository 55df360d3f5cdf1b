"""One registry's ECR control-plane client: a boto3 client used from worker threads.

boto3 is imported lazily (only runs that talk to ECR pay for it) and every SDK call runs in
`trio.to_thread.run_sync` behind a small `CapacityLimiter`, so trio is never blocked. The
endpoint is botocore's own choice: the region comes from the host, `AWS_USE_FIPS_ENDPOINT`,
`AWS_ENDPOINT_URL_ECR` / `AWS_ENDPOINT_URL` and the shared config are honoured by botocore.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ocync_core.errors import AuthenticationError, BadInput, OcyncError
from ocync_ecr.detect import parse_ecr_host
from ocync_ecr.options import EcrOptions, ecr_options

if TYPE_CHECKING:
    from ocync_core.registry import RegistrySettings

__all__ = ["SDK_CONCURRENCY", "EcrApi", "EcrApiError", "error_code"]

# SDK calls in flight at once per registry (each holds a worker thread).
SDK_CONCURRENCY = 4

_T = TypeVar("_T")


class EcrApiError(OcyncError):
    """An ECR control-plane call failed for a reason that is not the caller's to interpret."""


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore `ClientError` (e.g. RepositoryNotFoundException)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


class EcrApi:
    """The ECR client of one registry (its region, account, profile and FIPS setting)."""

    def __init__(
        self,
        registry: RegistrySettings,
        session_factory: Callable[[str | None], Any] | None = None,
    ) -> None:
        self.registry = registry
        try:
            self.options: EcrOptions = ecr_options(registry.options)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            problems = "; ".join(
                e["msg"].removeprefix("Value error, ") for e in getattr(exc, "errors", lambda: [])()
            )
            raise BadInput(f"registry {registry.label}: {problems or exc}") from exc
        self.host = parse_ecr_host(registry.host)
        self.region = self.host.region if self.host else None
        self.account = self.host.account if self.host else None
        self._session_factory = session_factory or _default_session
        self._client: Any = None
        self._client_lock = threading.Lock()
        self.limiter = trio.CapacityLimiter(SDK_CONCURRENCY)

    @property
    def profile(self) -> str | None:
        return self.options.aws_profile

    def session(self) -> Any:
        """The boto3 session for this registry: its `aws_profile`, else the default chain."""
        return self._session_factory(self.profile)

    def client(self) -> Any:
        """The boto3 ECR client, created once (thread-safe; call from a worker thread)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        import botocore.config
        import botocore.exceptions

        try:
            session = self.session()
        except botocore.exceptions.ProfileNotFound as exc:
            raise BadInput(
                f"registry {self.registry.label}: aws_profile {self.profile!r} is not defined "
                "in the AWS shared config/credentials files"
            ) from exc
        config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 5},
            user_agent_extra="ocync",
            # A -fips host asks for FIPS endpoints; otherwise AWS_USE_FIPS_ENDPOINT decides.
            use_fips_endpoint=True if self.host is not None and self.host.fips else None,
        )
        try:
            return session.client("ecr", region_name=self.region, config=config)
        except botocore.exceptions.NoRegionError as exc:
            raise BadInput(
                f"registry {self.registry.label}: cannot tell the AWS region from host "
                f"{self.registry.host!r}; set AWS_REGION or use the registry's ECR host name"
            ) from exc

    def registry_id(self) -> dict[str, str]:
        return {"registryId": self.account} if self.account else {}

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Run one ECR API operation in a worker thread; botocore errors pass through."""

        def run() -> dict[str, Any]:
            return getattr(self.client(), _snake(operation))(**params)

        async with self.limiter:
            return await trio.to_thread.run_sync(run, abandon_on_cancel=True)

    def failure(self, operation: str, exc: Exception) -> OcyncError:
        """An ocync error for an SDK failure, naming the registry, the operation and the cause."""
        import botocore.exceptions

        where = f"registry {self.registry.label}: ECR {operation}"
        if isinstance(
            exc,
            botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError,
        ):
            profile = f" (profile {self.profile!r})" if self.profile else ""
            return AuthenticationError(
                f"{where}: no AWS credentials found{profile}; configure the AWS default "
                "credential chain (env, shared files, role) or set aws_profile"
            )
        code = error_code(exc)
        if code in _AUTH_CODES:
            return AuthenticationError(f"{where}: {code}: {_message(exc)}")
        if isinstance(exc, OcyncError):
            return exc
        return EcrApiError(f"{where}: {code or type(exc).__name__}: {_message(exc)}")


_AUTH_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
    }
)


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        message = response.get("Error", {}).get("Message")
        if message:
            return str(message)
    return str(exc)


def _snake(operation: str) -> str:
    out = []
    for i, ch in enumerate(operation):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _default_session(profile: str | None) -> Any:
    import boto3

    return boto3.Session(profile_name=profile) if profile else boto3.Session()
