"""Signed callback URLs: an outside system calls back without the version or credentials.

A token names a node and the version of one attempt, optionally an expiry,
and carries an HMAC-SHA256 of them under a secret that only the application
knows. ``POST /api/callbacks/{token}`` delivers its body as the callback's
data to exactly that attempt: a token of an earlier attempt (the node was
retried since) is refused, as are forged and expired ones.

A component asks for the URL in ``execute``::

    signer = CallbackSigner(secret, base_url="https://flows.example.com")

    class Approval(Service):
        __need_schedule__ = True

        async def execute(self, data, parent_data):
            data.outputs.callback_url = signer.url_for(self, expires_in=3600)
            ...  # hand the URL to the outside system
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any, Protocol

import attrs

from ..exceptions import ConfigurationError

__all__ = [
    "PUBLIC_URL_ENV",
    "SECRET_ENV",
    "CallbackSigner",
    "CallbackTarget",
    "InvalidCallbackToken",
]

#: The environment variable ``CallbackSigner.from_env`` reads the secret from.
SECRET_ENV = "AIOBAMBOO_CALLBACK_SECRET"
#: The environment variable with the URL under which the API is reachable from outside.
PUBLIC_URL_ENV = "AIOBAMBOO_PUBLIC_URL"

#: The shortest secret accepted: an HMAC key shorter than this is guessable.
MIN_SECRET_BYTES = 16


class InvalidCallbackToken(Exception):
    """A callback token that is malformed, forged or expired; the message says which."""


class _Attempt(Protocol):
    id: str
    version: str


@attrs.frozen
class CallbackTarget:
    """What a valid token names: the node, the version of its attempt, the expiry (or None)."""

    node_id: str
    version: str
    expires: float | None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CallbackSigner:
    """Makes and checks callback tokens with HMAC-SHA256 under ``secret``.

    ``base_url`` is where the HTTP API is reachable from the outside system
    (the prefix it is mounted under included); :meth:`url_for` appends
    ``/api/callbacks/{token}`` to it. Give the same signer (or the same
    secret) to the web application and to the components.
    """

    def __init__(self, secret: str | bytes, base_url: str = "") -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"the callback secret must have at least {MIN_SECRET_BYTES} bytes"
            )
        self._key = key
        self.base_url = base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"CallbackSigner(base_url={self.base_url!r})"  # never the secret

    @classmethod
    def from_env(cls) -> CallbackSigner | None:
        """The signer configured by ``AIOBAMBOO_CALLBACK_SECRET`` and ``AIOBAMBOO_PUBLIC_URL``."""
        secret = os.environ.get(SECRET_ENV)
        if not secret:
            return None
        return cls(secret, os.environ.get(PUBLIC_URL_ENV, ""))

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def token(self, node_id: str, version: str, *, expires_in: float | None = None) -> str:
        """A token for the attempt ``version`` of ``node_id``, valid ``expires_in`` seconds."""
        if (
            not isinstance(node_id, str)
            or not node_id
            or not isinstance(version, str)
            or not version
        ):
            raise ValueError("node_id and version must be non-empty strings")
        claims: dict[str, Any] = {"n": node_id, "v": version}
        if expires_in is not None:
            claims["e"] = int(time.time() + expires_in) + 1
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{self._sign(payload)}"

    def url_for(self, service: _Attempt, *, expires_in: float | None = None) -> str:
        """The callback URL of the attempt a component runs now (its ``id`` and ``version``)."""
        token = self.token(service.id, service.version, expires_in=expires_in)
        return f"{self.base_url}/api/callbacks/{token}"

    def verify(self, token: str, *, now: float | None = None) -> CallbackTarget:
        """What ``token`` names; :class:`InvalidCallbackToken` when forged, malformed or expired."""
        payload, sep, signature = token.partition(".")
        if not sep or not payload or not signature or len(token) > 4096:
            raise InvalidCallbackToken("the callback token is malformed")
        try:
            expected = self._sign(payload)
        except UnicodeEncodeError:
            raise InvalidCallbackToken("the callback token is malformed") from None
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
            raise InvalidCallbackToken("the callback token's signature is not valid")
        try:
            claims = json.loads(_unb64(payload))
            node_id, version = claims["n"], claims["v"]
            expires = claims.get("e")
        except (ValueError, KeyError, TypeError):
            raise InvalidCallbackToken("the callback token is malformed") from None
        if not isinstance(node_id, str) or not isinstance(version, str):
            raise InvalidCallbackToken("the callback token is malformed")
        if expires is not None:
            if not isinstance(expires, int | float) or isinstance(expires, bool):
                raise InvalidCallbackToken("the callback token is malformed")
            if (time.time() if now is None else now) >= expires:
                raise InvalidCallbackToken("the callback token has expired")
        return CallbackTarget(node_id, version, None if expires is None else float(expires))
