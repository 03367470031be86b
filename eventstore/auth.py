"""Authenticators: turn a request's headers into a proven ``Principal``, or refuse them.

A network host calls ``authenticate(headers)``: ``None`` means no credentials
were sent (``UNAUTHENTICATED`` unless the host allows anonymous callers);
``AuthenticationError`` means bad ones. ``jwt_authenticator`` needs PyJWT
(the ``auth`` extra); ``api_key_authenticator`` only the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .core.errors import AuthenticationError
from .core.identity import Authenticator, Principal

#: Algorithms a JWT may use by default: asymmetric only, so a public key can never
#: be used as an HMAC secret (the HS/RS key confusion).
DEFAULT_JWT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
#: Seconds of clock skew allowed on ``exp`` and ``nbf``.
DEFAULT_LEEWAY = 30.0

_HMAC = {"HS256", "HS384", "HS512"}


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""


def _bearer(headers: Mapping[str, str]) -> str:
    value = _header(headers, "authorization")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def jwt_authenticator(
    *,
    audience: str,
    issuer: str,
    key: str | bytes | None = None,
    jwks_file: str | Path | None = None,
    algorithms: Iterable[str] = DEFAULT_JWT_ALGORITHMS,
    leeway: float = DEFAULT_LEEWAY,
    roles_claim: str = "roles",
    tenants_claim: str = "tenants",
) -> Authenticator:
    """Authenticate ``Authorization: Bearer <JWT>``.

    ``aud`` and ``iss`` must match and ``exp`` must be present (``nbf`` is
    checked when present), each with ``leeway`` seconds of clock skew.
    ``algorithms`` is an allow-list: ``none`` is refused, and symmetric (HS*)
    and asymmetric algorithms cannot be mixed (the key-confusion attack). The
    key is ``key``, or the JWKS key whose ``kid`` matches the token's, read from
    ``jwks_file``. The principal: ``sub``, ``roles``, ``tenants``.
    """
    import jwt  # the auth extra: PyJWT[crypto]

    allowed = tuple(algorithms)
    if not allowed or any(a.lower() == "none" for a in allowed):
        raise ValueError(f"algorithms must be a non-empty allow-list without 'none', got {allowed}")
    if any(a in _HMAC for a in allowed) and any(a not in _HMAC for a in allowed):
        raise ValueError(
            f"algorithms {allowed} mix HMAC and public-key algorithms, which lets a public key "
            "be used as an HMAC secret; allow one family"
        )
    if (key is None) == (jwks_file is None):
        raise ValueError("pass exactly one of key= or jwks_file=")
    keys: dict[str, Any] = {}
    if jwks_file is not None:
        data = json.loads(Path(jwks_file).read_text())
        for entry in data.get("keys", []):
            keys[entry.get("kid", "")] = jwt.PyJWK(entry).key

    def authenticate(headers: Mapping[str, str]) -> Principal | None:
        token = _bearer(headers)
        if not token:
            return None
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg", "")
            if alg not in allowed:
                raise AuthenticationError(f"the token's algorithm {alg!r} is not allowed")
            if jwks_file is not None:
                kid = header.get("kid", "")
                if kid not in keys:
                    raise AuthenticationError(f"the token's key id {kid!r} is not known")
                verify_key: Any = keys[kid]
            else:
                verify_key = key
            claims = jwt.decode(
                token,
                verify_key,
                algorithms=list(allowed),
                audience=audience,
                issuer=issuer,
                leeway=leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except AuthenticationError:
            raise
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("the token is from another issuer") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("the token is not valid yet") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"the token lacks the {exc.claim!r} claim") from None
        except (jwt.InvalidTokenError, jwt.InvalidKeyError, ValueError, TypeError):
            # InvalidKeyError: a token signed with another kind of key (ES256 against an
            # RSA key), which PyJWT does not count among the invalid tokens.
            raise AuthenticationError("the token is not valid") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError("the token's 'sub' claim is empty") from None
        return Principal(
            subject,
            roles=_strings(claims.get(roles_claim)),
            tenants=_strings(claims.get(tenants_claim)),
        )

    return authenticate


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()


def hash_api_key(api_key: str) -> str:
    """The SHA-256 hex digest to store instead of the key (keys are long random strings)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def api_key_authenticator(
    keys: Mapping[str, Principal], *, header: str = "X-Api-Key"
) -> Authenticator:
    """Authenticate an API key sent in ``header`` (or ``Authorization: ApiKey <key>``).

    ``keys`` maps ``hash_api_key(key)`` to its principal: the server never
    holds the keys themselves, and digests are compared in constant time
    (every stored digest is compared, so timing says nothing about which one).
    """
    stored = [(digest.encode(), principal) for digest, principal in keys.items()]

    def authenticate(headers: Mapping[str, str]) -> Principal | None:
        presented = _header(headers, header)
        if not presented:
            scheme, _, rest = _header(headers, "authorization").partition(" ")
            presented = rest.strip() if scheme.lower() == "apikey" else ""
        if not presented:
            return None
        digest = hash_api_key(presented).encode()
        found: Principal | None = None
        for candidate, principal in stored:
            if hmac.compare_digest(candidate, digest):
                found = principal
        if found is None:
            raise AuthenticationError("the API key is not known")
        return found

    return authenticate


__all__ = [
    "DEFAULT_JWT_ALGORITHMS",
    "DEFAULT_LEEWAY",
    "AuthenticationError",
    "Authenticator",
    "Principal",
    "api_key_authenticator",
    "hash_api_key",
    "jwt_authenticator",
]
