"""JWT checks: algorithms by config, key confusion, claims, roles, anonymous access."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from chat_harness import HMAC_SECRET, Ed25519Keys, make_token
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from livechat.auth import ANONYMOUS, AuthError, TokenVerifier, token_from_request
from livechat.config import AuthConfig
from livechat.ports.meta import Role
from livechat.protocol import CloseCode, ErrorCode

HS = AuthConfig(hmac_secret=HMAC_SECRET)


def refused(verifier: TokenVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    return info.value


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "u1", "aud": "livechat", "iat": now, "exp": now + 600, **extra}


def test_hs256_token_gives_principal_with_roles() -> None:
    token = make_token("u1", name="Ann", role="moderator", streams={"s9": "broadcaster"})
    principal = TokenVerifier(HS).verify(token)
    assert principal.user_id == "u1" and principal.name == "Ann" and not principal.anonymous
    assert principal.role_in("s1") is Role.MODERATOR
    assert principal.role_in("s9") is Role.BROADCASTER


def test_eddsa_token(ed_keys: Ed25519Keys) -> None:
    verifier = TokenVerifier(AuthConfig(algorithms=("EdDSA",), public_key_pem=ed_keys.public_pem))
    token = jwt.encode(claims(), ed_keys.private, algorithm="EdDSA")
    assert verifier.verify(token).user_id == "u1"


def test_es256_and_rs256_tokens() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verifier = TokenVerifier(AuthConfig(algorithms=("ES256",), public_key_pem=pem.decode()))
    assert verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256")).user_id == "u1"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verifier = TokenVerifier(AuthConfig(algorithms=("RS256",), public_key_pem=pem.decode()))
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256")).user_id == "u1"


def test_expired_token_is_auth_expired() -> None:
    err = refused(TokenVerifier(HS), make_token("u1", ttl=-120))
    assert err.code is ErrorCode.AUTH_EXPIRED and err.close_code is CloseCode.AUTH_EXPIRED


def test_not_yet_valid_token() -> None:
    token = jwt.encode(claims(nbf=int(time.time()) + 600), HMAC_SECRET, algorithm="HS256")
    err = refused(TokenVerifier(HS), token)
    assert err.code is ErrorCode.AUTH_INVALID and err.close_code is CloseCode.AUTH_INVALID


def test_wrong_audience_and_issuer() -> None:
    assert refused(TokenVerifier(HS), make_token("u1", aud="other")).code is ErrorCode.AUTH_INVALID
    with_issuer = TokenVerifier(AuthConfig(hmac_secret=HMAC_SECRET, issuer="https://id.example"))
    assert refused(with_issuer, make_token("u1", iss="https://evil.example")).code is ErrorCode.AUTH_INVALID
    assert with_issuer.verify(make_token("u1", iss="https://id.example")).user_id == "u1"


def test_forged_signature() -> None:
    forged = make_token("u1", secret="another-secret-of-enough-length-0123456789")
    assert "signature" in refused(TokenVerifier(HS), forged).message


def test_missing_exp_and_sub() -> None:
    token = jwt.encode({"sub": "u1", "aud": "livechat"}, HMAC_SECRET, algorithm="HS256")
    assert "exp" in refused(TokenVerifier(HS), token).message
    token = jwt.encode({"aud": "livechat", "exp": int(time.time()) + 60}, HMAC_SECRET, algorithm="HS256")
    assert refused(TokenVerifier(HS), token).code is ErrorCode.AUTH_INVALID


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_alg_none_is_refused() -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims())}."
    err = refused(TokenVerifier(HS), unsigned)
    assert err.code is ErrorCode.AUTH_INVALID and "none" in err.message


def test_alg_not_configured_is_refused(ed_keys: Ed25519Keys) -> None:
    token = jwt.encode(claims(), ed_keys.private, algorithm="EdDSA")
    assert "EdDSA" in refused(TokenVerifier(HS), token).message


def test_key_confusion_public_key_as_hmac_secret_is_refused(ed_keys: Ed25519Keys) -> None:
    """Both families configured: an HS256 token whose "secret" is the public PEM must fail."""
    import hashlib
    import hmac

    verifier = TokenVerifier(
        AuthConfig(algorithms=("HS256", "EdDSA"), hmac_secret=HMAC_SECRET, public_key_pem=ed_keys.public_pem)
    )
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims())}"
    mac = hmac.new(ed_keys.public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert refused(verifier, token).code is ErrorCode.AUTH_INVALID
    # The same verifier still accepts genuine tokens of both kinds.
    assert verifier.verify(make_token("u1")).user_id == "u1"
    assert verifier.verify(jwt.encode(claims(), ed_keys.private, algorithm="EdDSA")).user_id == "u1"


def test_configuration_refuses_unsafe_keys(ed_keys: Ed25519Keys) -> None:
    with pytest.raises(ValueError, match="public key"):
        TokenVerifier(AuthConfig(hmac_secret=ed_keys.public_pem))
    with pytest.raises(ValueError, match="at least"):
        TokenVerifier(AuthConfig(hmac_secret="short"))
    with pytest.raises(ValueError, match="none"):
        TokenVerifier(AuthConfig(algorithms=("none",)))
    with pytest.raises(ValueError, match="cannot verify"):
        TokenVerifier(AuthConfig(algorithms=("RS256",), public_key_pem=ed_keys.public_pem))


def test_unknown_role_claim_is_refused() -> None:
    assert "role" in refused(TokenVerifier(HS), make_token("u1", role="admin")).message


def test_token_sources() -> None:
    assert token_from_request("/live?token=abc&x=1", None) == "abc"
    assert token_from_request("/live", "Bearer xyz") == "xyz"
    assert token_from_request("/live?token=abc", "Bearer xyz") == "xyz"
    assert token_from_request("/live", None) is None
    with pytest.raises(AuthError):
        token_from_request("/live", "Basic dXNlcjpwYXNz")
    with pytest.raises(AuthError):
        token_from_request("/live?token=a&token=b", None)


def test_anonymous_when_allowed_and_refused_otherwise() -> None:
    assert TokenVerifier(HS).authenticate("/live", None) is ANONYMOUS
    strict = TokenVerifier(AuthConfig(hmac_secret=HMAC_SECRET, allow_anonymous=False))
    with pytest.raises(AuthError) as info:
        strict.authenticate("/live", None)
    assert info.value.code is ErrorCode.AUTH_REQUIRED and info.value.close_code is CloseCode.AUTH_REQUIRED
    assert strict.authenticate(f"/live?token={make_token('u2')}", None).user_id == "u2"


def test_no_key_configured_refuses_every_token() -> None:
    verifier = TokenVerifier(AuthConfig())
    assert verifier.authenticate("/live", None) is ANONYMOUS
    assert refused(verifier, make_token("u1")).code is ErrorCode.AUTH_INVALID
