"""One-time pairing codes: hand a booth token to the booth app through a link or QR code.

``rekap registry issue-token kokas-01`` mints the booth token and, with it, a
pairing code; the link ``<public_url>/booth/#pair=<code>`` (the code rides in
the URL fragment, which browsers never send, so it is in no server log) lets
the tablet fetch the token once with ``POST /v1/booth/pair``.

The store is a JSON file beside the token file (``<tokens>.pairing.json``,
mode 0600). Per code it holds only:

* ``sha256(code)`` as the entry's key (the lookup),
* the booth id and the expiry (default 15 minutes),
* the token encrypted under keys derived from the code (an HMAC-SHA256
  keystream and an HMAC-SHA256 tag over booth id and ciphertext).

So the file never holds a usable token without the code, which is 144 random
bits and single use: a keystream is never reused, and no nonce is needed.
Redeeming happens under an exclusive file lock and ends with an atomic
``os.replace``, so two tablets racing with the same code get one token and one
``code_used``. A redeemed or expired entry keeps its hash (no secret) for a day
so a second try gets a specific answer instead of "unknown".
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

#: How long a pairing link works unless the operator says otherwise.
DEFAULT_TTL = timedelta(minutes=15)
#: How long a used or expired entry is kept so a retry learns why it failed.
KEEP_SPENT = timedelta(days=1)
#: 18 random bytes = 144 bits, 24 URL-safe characters: short enough for a small QR code.
CODE_BYTES = 18
#: What a code looks like; anything else is a malformed request, not an unknown code.
CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")

RefusalReason = Literal["unknown_code", "code_used", "code_expired"]


@dataclass(frozen=True)
class Paired:
    """A code redeemed: the booth and its token, handed out exactly once."""

    booth_id: str
    token: str


@dataclass(frozen=True)
class Refusal:
    """Why a code gave nothing (``unknown_code`` → 404, the others → 410)."""

    reason: RefusalReason
    detail: str

    @property
    def http(self) -> int:
        return 404 if self.reason == "unknown_code" else 410


class PairingStoreError(Exception):
    """The pairing file cannot be read or written (a 503 for the caller, never a 500)."""


def store_path(tokens_path: Path) -> Path:
    """The pairing file that belongs to a token file."""
    return tokens_path.with_name(tokens_path.name + ".pairing.json")


def pairing_link(public_url: str, code: str) -> str:
    return f"{public_url.rstrip('/')}/booth/#pair={code}"


def _keys(code: str) -> tuple[bytes, bytes]:
    secret = code.encode()
    return (hmac.new(secret, b"rekap-pairing-v1 encrypt", hashlib.sha256).digest(),
            hmac.new(secret, b"rekap-pairing-v1 tag", hashlib.sha256).digest())


def _keystream(key: bytes, length: int) -> bytes:
    blocks = (hmac.new(key, i.to_bytes(8, "big"), hashlib.sha256).digest()
              for i in range((length + 31) // 32))
    return b"".join(blocks)[:length]


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def _tag(key: bytes, booth_id: str, ciphertext: bytes) -> str:
    return hmac.new(key, booth_id.encode() + b"\0" + ciphertext, hashlib.sha256).hexdigest()


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[dict[str, Any]]:
    """The store's entries under an exclusive lock; written back (atomically) on clean exit."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise PairingStoreError(f"cannot open the pairing lock {lock_path}: {exc}") from exc
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        entries = _read(path)
        before = json.dumps(entries, sort_keys=True)
        yield entries
        if json.dumps(entries, sort_keys=True) != before:
            _write(path, entries)
    finally:
        os.close(lock_fd)  # closing releases the flock


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PairingStoreError(f"pairing file {path} unreadable: {exc}") from exc
    codes = data.get("codes") if isinstance(data, dict) else None
    if not isinstance(codes, dict):
        raise PairingStoreError(f"pairing file {path} has no 'codes' table")
    return codes


def _write(path: Path, entries: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "codes": entries}, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise PairingStoreError(f"cannot write the pairing file {path}: {exc}") from exc


def _prune(entries: dict[str, Any], now: datetime) -> None:
    for key, entry in list(entries.items()):
        try:
            expires = datetime.fromisoformat(entry["expires_at"])
        except (KeyError, TypeError, ValueError):
            del entries[key]
            continue
        if now - expires > KEEP_SPENT:
            del entries[key]


def create_code(path: Path, booth_id: str, token: str, *, ttl: timedelta = DEFAULT_TTL,
                now: datetime | None = None) -> str:
    """A fresh single-use code that hands out ``token`` for ``booth_id`` until ``ttl`` passes.

    Unused codes of the same booth expire now (their token goes): they would hand out
    an older token, which the new one has just replaced in the token file.
    """
    if ttl <= timedelta(0):
        raise ValueError("a pairing code needs a positive lifetime")
    moment = _now(now)
    code = secrets.token_urlsafe(CODE_BYTES)
    enc_key, tag_key = _keys(code)
    plain = token.encode()
    ciphertext = _xor(plain, _keystream(enc_key, len(plain)))
    with _locked(path) as entries:
        _prune(entries, moment)
        for entry in entries.values():
            if entry.get("booth_id") == booth_id and "ciphertext" in entry:
                del entry["ciphertext"], entry["tag"]
                entry["expires_at"] = moment.isoformat(timespec="seconds")
        entries[code_hash(code)] = {
            "booth_id": booth_id,
            "created_at": moment.isoformat(timespec="seconds"),
            "expires_at": (moment + ttl).isoformat(timespec="seconds"),
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "tag": _tag(tag_key, booth_id, ciphertext),
        }
    return code


def redeem(path: Path, code: str, *, now: datetime | None = None) -> Paired | Refusal:
    """Exchange ``code`` for its token, once. Refusals are results, not exceptions.

    Raises :class:`PairingStoreError` only when the file itself is unusable.
    """
    moment = _now(now)
    with _locked(path) as entries:
        _prune(entries, moment)
        try:
            return _redeem_entry(entries, code, moment)
        except (KeyError, TypeError, ValueError) as exc:
            raise PairingStoreError(f"pairing file {path}: damaged entry ({exc!r})") from exc


def _redeem_entry(entries: dict[str, Any], code: str, moment: datetime) -> Paired | Refusal:
    entry = entries.get(code_hash(code))
    if not isinstance(entry, dict):
        return Refusal("unknown_code", "this pairing code is not known: ask for a new link")
    if "used_at" in entry:
        return Refusal("code_used", "this pairing code was already used: ask for a new link")
    if moment >= datetime.fromisoformat(entry["expires_at"]) or "ciphertext" not in entry:
        entry.pop("ciphertext", None)
        entry.pop("tag", None)
        return Refusal("code_expired", f"this pairing code expired at {entry['expires_at']}: "
                                       "ask for a new link")
    enc_key, tag_key = _keys(code)
    ciphertext = base64.b64decode(entry["ciphertext"], validate=True)
    if not hmac.compare_digest(_tag(tag_key, entry["booth_id"], ciphertext), entry["tag"]):
        return Refusal("unknown_code", "this pairing code does not match its entry")
    token = _xor(ciphertext, _keystream(enc_key, len(ciphertext))).decode()
    del entry["ciphertext"], entry["tag"]
    entry["used_at"] = moment.isoformat(timespec="seconds")
    return Paired(entry["booth_id"], token)
