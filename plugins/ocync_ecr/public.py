"""Amazon ECR Public (`public.ecr.aws`): the standard token flow, with AWS credentials.

ECR Public speaks the ordinary Bearer token exchange. With AWS credentials,
`ecr-public:GetAuthorizationToken` (in us-east-1 only) gives `AWS:<password>`, which is
presented as Basic credentials to the token realm and earns the higher rate limits of an
authenticated principal; without AWS credentials the exchange is anonymous, which is enough
to pull public images.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import httpx
import trio

from ocync_core.auth.credentials import Credentials
from ocync_core.auth.provider import StandardAuth
from ocync_core.errors import AuthenticationError
from ocync_core.registry import RegistrySettings

__all__ = ["ECR_PUBLIC_KIND", "ECR_PUBLIC_REGION", "EcrPublicAuth"]

log = logging.getLogger(__name__)

ECR_PUBLIC_KIND = "ecr-public"
ECR_PUBLIC_REGION = "us-east-1"  # the only region that serves ecr-public:GetAuthorizationToken


class EcrPublicAuth(StandardAuth):
    """StandardAuth whose credentials come from ecr-public:GetAuthorizationToken, if any."""

    def __init__(
        self,
        registry: RegistrySettings,
        http: httpx.AsyncClient,
        client_factory: Callable[[], Any | None] | None = None,
    ) -> None:
        super().__init__(registry, http)
        self._client_factory = client_factory or self._default_client

    async def _resolve_credentials(self) -> Credentials | None:
        if self._explicit_credentials() or self.registry.token:
            return await super()._resolve_credentials()
        # boto3 blocks (credential chain, HTTPS): keep it off the trio thread.
        return await trio.to_thread.run_sync(self._fetch, abandon_on_cancel=True)

    def _fetch(self) -> Credentials | None:
        import botocore.exceptions

        client = self._client_factory()
        if client is None:
            log.info("%s: no AWS credentials; pulling anonymously", self.registry.label)
            return None
        try:
            data = client.get_authorization_token()["authorizationData"]
        except botocore.exceptions.NoCredentialsError:
            log.info("%s: no AWS credentials; pulling anonymously", self.registry.label)
            return None
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise AuthenticationError(
                f"registry {self.registry.label}: ecr-public:GetAuthorizationToken refused "
                f"({code}); grant it to the caller or remove the AWS credentials to pull "
                "anonymously"
            ) from exc
        decoded = base64.b64decode(data["authorizationToken"]).decode()
        user, _, password = decoded.partition(":")
        return Credentials(user, password)

    def _default_client(self) -> Any | None:
        import boto3

        profile = self.registry.options.get("aws_profile")
        session = boto3.Session(profile_name=profile) if profile else boto3.Session()
        if session.get_credentials() is None:
            return None
        return session.client("ecr-public", region_name=ECR_PUBLIC_REGION)
