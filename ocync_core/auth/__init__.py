"""Registry authentication: challenges, scopes, credentials, token exchange, the provider.

`StandardAuth` is what the generic OCI plugin returns from `ocync_auth_provider`; the pieces
it is built from are public so registry-specific plugins can reuse them.
"""

from ocync_core.auth.bearer import DEFAULT_EXPIRES_IN, Dropped, TokenCache, TokenError, TokenKey
from ocync_core.auth.challenge import Challenge, MalformedChallenge, parse_www_authenticate
from ocync_core.auth.credentials import Credentials
from ocync_core.auth.dockerconfig import DOCKER_HUB_SERVER, DockerConfig, default_config_path
from ocync_core.auth.provider import StandardAuth
from ocync_core.auth.realm import check_realm, registry_hostnames
from ocync_core.auth.scopes import (
    merge_scopes,
    pull_scopes,
    push_scopes,
    repository_scope,
    scopes_cover,
)

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "DOCKER_HUB_SERVER",
    "Challenge",
    "Credentials",
    "DockerConfig",
    "Dropped",
    "MalformedChallenge",
    "StandardAuth",
    "TokenCache",
    "TokenError",
    "TokenKey",
    "check_realm",
    "default_config_path",
    "merge_scopes",
    "parse_www_authenticate",
    "pull_scopes",
    "push_scopes",
    "registry_hostnames",
    "repository_scope",
    "scopes_cover",
]
