"""Password hashing (scrypt, random salt) and random tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

# scrypt cost: about 16 MiB and a few tens of milliseconds per hash on this class of machine.
_N, _R, _P = 2**14, 8, 1
_DKLEN = 32


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


async def hash_password_off_loop(password: str) -> str:
    """:func:`hash_password` on a worker thread: scrypt takes tens of milliseconds."""
    return await asyncio.get_running_loop().run_in_executor(None, hash_password, password)


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def new_token() -> str:
    """A session token: 256 random bits as hex."""
    return secrets.token_hex(32)


def token_digest(token: str) -> str:
    """What the store keeps of a token: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def generate_password() -> str:
    return secrets.token_urlsafe(15)
