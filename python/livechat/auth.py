"""JWT authentication at upgrade: who is on a connection and what they may do.

The token arrives as ``?token=`` in the upgrade URL or as ``Authorization: Bearer`` (the edge's
EVENT_OPEN carries both). Rules:

- The algorithm comes from configuration, never from the token: a header naming an algorithm that
  is not configured (``none`` included) is refused before any signature work.
- Each algorithm has its own key kind: HS256 only ever sees ``hmac_secret``, asymmetric algorithms
  only the configured public key. A token "signed" HS256 with the public key as secret (the classic
  key-confusion attack) is checked against the HMAC secret and fails.
- ``exp`` (required by default), ``nbf``, ``iat``, ``aud`` and ``iss`` are checked with a small leeway.
- Claims have strict types (RFC 7519): ``exp``/``nbf``/``iat`` are JSON numbers (a numeric string is
  refused), ``sub``, ``name``, ``role`` and ``iss`` strings, ``streams`` an object of strings.
- The display name (``name``, else ``sub``) and ``sub`` follow the rules of comment text: NFC,
  stripped, no control or bidi characters; a name breaking them is refused with ``field``.
- Roles: a global ``role`` claim plus per-stream roles ``{"streams": {"s1": "moderator"}}``; the
  stronger one applies in a stream. No token at all gives a read-only anonymous viewer when
  configured, else the connection is refused.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.types import Options

from livechat.config import AuthConfig
from livechat.ports.meta import Role
from livechat.protocol import FORBIDDEN_TEXT, TOKEN_MAX, CloseCode, ErrorCode

ROLE_RANK: Final[Mapping[Role, int]] = {Role.VIEWER: 0, Role.MODERATOR: 1, Role.BROADCASTER: 2}

_HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
# Asymmetric algorithm -> the public key type it must be verified with.
_ASYMMETRIC_KEY_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    "EdDSA": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
    "ES256": (ec.EllipticCurvePublicKey,),
    "ES384": (ec.EllipticCurvePublicKey,),
    "RS256": (rsa.RSAPublicKey,),
    "RS384": (rsa.RSAPublicKey,),
    "RS512": (rsa.RSAPublicKey,),
    "PS256": (rsa.RSAPublicKey,),
}
_EC_CURVES: Final[Mapping[str, str]] = {"ES256": "secp256r1", "ES384": "secp384r1"}
MIN_HMAC_SECRET_BYTES: Final = 32
MAX_TOKEN_CHARS: Final = TOKEN_MAX
#: Display names longer than this (code points, after NFC) are cut.
NAME_MAX_CHARS: Final = 64
_TIME_CLAIMS: Final = ("exp", "nbf", "iat")


class AuthError(Exception):
    """The connection cannot be admitted: send ``code`` as an error (with ``field`` when one claim is
    at fault), then close with ``close_code``."""

    def __init__(
        self, code: ErrorCode, close_code: CloseCode, message: str, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code
        self.message = message
        self.field = field

    @property
    def extra(self) -> dict[str, Any]:
        """The ``err`` message's extra fields."""
        return {"field": self.field} if self.field is not None else {}


def _invalid(message: str, field: str | None = None) -> AuthError:
    return AuthError(ErrorCode.AUTH_INVALID, CloseCode.AUTH_INVALID, message, field)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_claim_types(claims: Mapping[str, Any], config: AuthConfig) -> None:
    """Refuse claims of the wrong JSON type before any of them is used: PyJWT takes ``"exp":
    "9999999999"`` as a time, RFC 7519 makes NumericDate a number."""
    for claim in _TIME_CLAIMS:
        if claim in claims and not _is_number(claims[claim]):
            raise _invalid(f"claim {claim!r} must be a number (seconds since the epoch)", claim)
    for claim in ("sub", "iss", config.name_claim, config.role_claim):
        if claims.get(claim) is not None and not isinstance(claims[claim], str):
            raise _invalid(f"claim {claim!r} must be a string", claim)
    aud = claims.get("aud")
    if aud is not None and not (
        isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        raise _invalid("claim 'aud' must be a string or a list of strings", "aud")
    streams = claims.get(config.stream_roles_claim)
    if streams is not None and not (
        isinstance(streams, dict) and all(isinstance(r, str) for r in streams.values())
    ):
        raise _invalid(
            f"claim {config.stream_roles_claim!r} must map stream ids to roles",
            config.stream_roles_claim,
        )


def display_text(value: str, claim: str, limit: int) -> str:
    """``value`` by the rules of comment text (docs/protocol.md §2): NFC, stripped, no control or
    bidi characters, at most ``limit`` code points (longer is cut); empty stays empty."""
    text = unicodedata.normalize("NFC", value).strip()
    if FORBIDDEN_TEXT.search(text):
        raise _invalid(f"claim {claim!r} holds control or bidi characters", claim)
    return text[:limit]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is on a connection. ``user_id`` None = anonymous (read-only)."""

    user_id: str | None
    name: str
    role: Role = Role.VIEWER
    stream_roles: Mapping[str, Role] = field(default_factory=dict)
    # Unix seconds the token expires (None: anonymous or no exp).
    expires_at: float | None = None

    @property
    def anonymous(self) -> bool:
        return self.user_id is None

    def role_in(self, stream: str) -> Role:
        """The stronger of the global role and the role for ``stream``."""
        local = self.stream_roles.get(stream)
        if local is not None and ROLE_RANK[local] > ROLE_RANK[self.role]:
            return local
        return self.role


ANONYMOUS: Final = Principal(user_id=None, name="anonymous")


def stronger(a: Role, b: Role) -> Role:
    return a if ROLE_RANK[a] >= ROLE_RANK[b] else b


def _parse_role(value: Any, claim: str) -> Role:
    if value is None:
        return Role.VIEWER
    try:
        return Role(value)
    except ValueError:
        raise _invalid(f"claim {claim!r} names an unknown role {value!r}") from None


def token_from_request(path_and_query: str, authorization: str | None) -> str | None:
    """The bearer token from the Authorization header, else from ``?token=``; None when absent."""
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _invalid("the Authorization header must be 'Bearer <token>'")
        return credentials.strip()
    query = urlsplit(path_and_query).query
    if not query:
        return None
    values = parse_qs(query, keep_blank_values=True).get("token")
    if not values:
        return None
    if len(values) > 1 or not values[0]:
        raise _invalid("exactly one non-empty token query parameter is allowed")
    return values[0]


class TokenVerifier:
    """Checks tokens against one AuthConfig; construction validates the keys once."""

    __slots__ = ("_config", "_keys", "_options")

    # An algorithm listed without its key (the default config has no secret) verifies nothing:
    # tokens naming it are refused and only anonymous access works.
    def __init__(self, config: AuthConfig) -> None:
        if not config.algorithms:
            raise ValueError("AuthConfig.algorithms is empty")
        self._config = config
        self._keys: dict[str, Any] = {}
        public_key: Any = None
        for alg in config.algorithms:
            if alg in _HMAC_ALGORITHMS:
                secret = config.hmac_secret
                if secret is None:
                    continue  # no key for it: tokens naming it are refused
                if secret.lstrip().startswith(("-----BEGIN", "ssh-")):
                    raise ValueError("hmac_secret looks like a public key: refusing (key confusion)")
                if len(secret.encode()) < MIN_HMAC_SECRET_BYTES:
                    raise ValueError(f"hmac_secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")
                self._keys[alg] = secret.encode()
            elif alg in _ASYMMETRIC_KEY_TYPES:
                if config.public_key_pem is None:
                    continue
                if public_key is None:
                    public_key = load_pem_public_key(config.public_key_pem.encode())
                if not isinstance(public_key, _ASYMMETRIC_KEY_TYPES[alg]):
                    raise ValueError(f"the configured public key cannot verify {alg}")
                curve = _EC_CURVES.get(alg)
                if curve is not None and isinstance(public_key, ec.EllipticCurvePublicKey):
                    if public_key.curve.name != curve:
                        raise ValueError(f"{alg} needs a {curve} key, got {public_key.curve.name}")
                self._keys[alg] = public_key
            else:
                raise ValueError(f"algorithm {alg!r} is not supported (none is never allowed)")
        required = ["exp", "sub"] if config.require_exp else ["sub"]
        self._options: Options = {"require": required, "verify_aud": config.audience is not None}

    def verify(self, token: str) -> Principal:
        """The principal a token names; raises AuthError (invalid, or expired)."""
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid("token too long")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _invalid("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._keys:
            raise _invalid(f"algorithm {alg!r} is not accepted")
        key = self._keys[alg]
        config = self._config
        # Only ever refuses: nothing of the unverified claims is used.
        check_claim_types(unverified, config)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway_s,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(ErrorCode.AUTH_EXPIRED, CloseCode.AUTH_EXPIRED, "token expired") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("token not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise _invalid("token audience does not match") from None
        except jwt.InvalidIssuerError:
            raise _invalid("token issuer does not match") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise _invalid("token signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise _invalid(f"token rejected: {exc}") from None
        return self._principal(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        config = self._config
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= 128:
            raise _invalid("claim 'sub' must be a user id of 1..128 characters", "sub")
        if FORBIDDEN_TEXT.search(sub) or sub != sub.strip():
            raise _invalid("claim 'sub' holds control, bidi or surrounding space characters", "sub")
        role = _parse_role(claims.get(config.role_claim), config.role_claim)
        raw_streams = claims.get(config.stream_roles_claim) or {}
        if not isinstance(raw_streams, dict):
            raise _invalid(f"claim {config.stream_roles_claim!r} must map stream ids to roles")
        stream_roles = {
            str(stream): _parse_role(value, config.stream_roles_claim)
            for stream, value in raw_streams.items()
        }
        raw_name = claims.get(config.name_claim)
        name = display_text(raw_name, config.name_claim, NAME_MAX_CHARS) if raw_name else ""
        exp = claims.get("exp")
        return Principal(
            user_id=sub,
            name=name or display_text(sub, "sub", NAME_MAX_CHARS),
            role=role,
            stream_roles=stream_roles,
            expires_at=float(exp) if isinstance(exp, int | float) else None,
        )

    def authenticate(self, path_and_query: str, authorization: str | None) -> Principal:
        """The principal of an upgrade request (EVENT_OPEN data); raises AuthError."""
        token = token_from_request(path_and_query, authorization)
        if token is None:
            if self._config.allow_anonymous:
                return ANONYMOUS
            raise AuthError(ErrorCode.AUTH_REQUIRED, CloseCode.AUTH_REQUIRED, "a token is required")
        return self.verify(token)
