"""OAUTHBEARER tokens for the Kafka clients: the OAuth 2.0 client credentials grant
(RFC 6749 §4.4) against the identity provider named by RELAIS_KAFKA_OAUTH_TOKEN_URL.

One token is shared by every connection of a process and fetched again a minute before it
expires (or after half its life, when the provider gives less than two minutes), so that
a burst of reconnections asks for one token, not one each.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any
from urllib.parse import quote

import aiohttp
from aiokafka.abc import AbstractTokenProvider

from relais.settings_kafka import OAuthClient

__all__ = ["ClientCredentialsTokens", "TokenError"]

_MARGIN_S = 60.0
_TIMEOUT_S = 10.0


class TokenError(RuntimeError):
    """The identity provider gave no usable token; the message names what to check."""


class ClientCredentialsTokens(AbstractTokenProvider):  # type: ignore[misc]
    """An aiokafka token provider for one OAuth client."""

    def __init__(self, client: OAuthClient) -> None:
        self._client = client
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token, lifetime = await self._fetch()
                self._renew_at = time.monotonic() + _renewal(lifetime)
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self._client.scope:
            form["scope"] = self._client.scope
        # RFC 6749 §2.3.1: HTTP Basic over the form-urlencoded id and secret
        pair = f"{quote(self._client.client_id)}:{quote(self._client.client_secret)}"
        headers = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}
        timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self._client.token_url, data=form, headers=headers) as response,
            ):
                if response.status != 200:
                    raise TokenError(
                        f"the token endpoint {self._client.token_url} answered HTTP "
                        f"{response.status}: check RELAIS_KAFKA_OAUTH_CLIENT_ID and _SECRET"
                    )
                body: Any = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TokenError(
                f"cannot reach the token endpoint {self._client.token_url} ({exc}): check "
                "RELAIS_KAFKA_OAUTH_TOKEN_URL"
            ) from None
        return _parse(body, self._client.token_url)


def _parse(body: Any, url: str) -> tuple[str, float]:
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise TokenError(f"the token endpoint {url} answered without an access_token")
    expires = body.get("expires_in", 3600)
    lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else 3600.0
    return token, lifetime


def _renewal(lifetime: float) -> float:
    """Seconds until the token is fetched again."""
    return lifetime - _MARGIN_S if lifetime > 2 * _MARGIN_S else lifetime / 2
