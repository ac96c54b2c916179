"""Booth and channel tokens: minting, hashing, the token file, and the one source ingest reads.

Tokens are 256-bit random strings, so a plain SHA-256 is enough to store them;
only hashes are written, to one TOML file (``REKAP_BOOTH_TOKENS_PATH``), never
to the registry::

    [booths]                                  # booth id = "<sha256 hex>"
    "kokas-01" = "<sha256 hex>"
    "kokas-02" = { sha256 = "<sha256 hex>", expires = 2022-06-06T22:00:00+07:00 }

    [channels]                                # <channel> or <channel>:<integrator>
    "marketplace" = "<sha256 hex>"
    "marketplace:tokopedia" = "<sha256 hex>"

An entry is the hash, or a table of the hash and an ``expires`` date-time with
an offset: from then on the token is refused (401 "token expired"). A channel
token named ``<channel>`` posts sale ids of that channel's namespace
(:data:`rekap.names.CHANNEL_ID_PREFIX`), one named ``<channel>:<integrator>``
only those of ``<prefix>:<integrator>:``.

:class:`TokenSource` is the only reader: ingest asks it for the :class:`Tokens`
in force on every request, and it re-reads the file when the file changes. The
file is the grant: deleting it revokes every booth and channel token at once,
and an unreadable file grants nothing (fail closed). Booths keep their sales
in the outbox meanwhile, so a revocation delays sales, never loses them.

``issue_token`` (``rekap tokens issue NAME``) and ``issue_demo_tokens``
(``rekap simulate --issue-demo-tokens``) write through :func:`write_tokens_file`,
which merges into whatever the file already holds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from rekap.errors import ConfigError
from rekap.filewatch import FileWatch
from rekap.names import ONLINE_CHANNELS
from rekap.registry import Registry

log = logging.getLogger(__name__)

#: Seconds between checks of the token file. A revocation takes effect within this
#: long; in between, a request costs no system call (ingest asks on every request).
CHECK_EVERY_S = 1.0
#: Files ``issue_demo_tokens`` writes in the runtime directory.
DEMO_HASHES = "demo-tokens.toml"
DEMO_SECRETS = "demo-tokens.secret.json"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: An integrator's name: it becomes part of the sale ids its token may post
#: (``mp:<integrator>:...``), so it is what a channel's own id part may be.
_INTEGRATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,79}$")


def _channel_name_ok(name: str) -> bool:
    channel, sep, integrator = name.partition(":")
    return channel in ONLINE_CHANNELS and (not sep or _INTEGRATOR.match(integrator) is not None)


@dataclass(frozen=True)
class Grant:
    """A token file entry in table form: the hash and when the token stops working."""

    sha256: str
    expires: datetime | None = None


#: Every token starts with this: a token beginning with "-" would be read as an option by a
#: command line taking ``--token VALUE``, and a fixed prefix lets secret scanners spot a
#: leaked one (as GitHub's ``ghp_``). Only hashes are stored, so older tokens stay valid.
TOKEN_PREFIX: Final = "rkp_"  # noqa: S105 - a public prefix, not a secret


def new_token() -> str:
    """A fresh token: :data:`TOKEN_PREFIX` and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Tokens:
    """The token hashes in force: booth id → hash, channel token name → hash, and the expiry
    of those that have one (keyed by the ``owner`` pair)."""

    booths: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)
    expires: Mapping[tuple[str, str], datetime] = field(default_factory=dict)

    def expired(self, kind: str, name: str, now: datetime | None = None) -> bool:
        """Whether the token of ``(kind, name)`` (an :meth:`owner` answer) has expired."""
        until = self.expires.get((kind, name))
        return until is not None and (now or datetime.now(UTC)) >= until

    def owner(self, token: str) -> tuple[Literal["booth", "channel"], str] | None:
        """Who holds ``token``: ``("booth", booth_id)``, ``("channel", name)`` or None.

        Every stored hash is compared, in constant time, so the answer's timing does
        not tell how far down the file a token is.
        """
        digest = hash_token(token)
        found: tuple[Literal["booth", "channel"], str] | None = None
        for name, stored in self.booths.items():
            if hmac.compare_digest(digest, stored):
                found = ("booth", name)
        for name, stored in self.channels.items():
            if hmac.compare_digest(digest, stored):
                found = ("channel", name)
        return found


def load_tokens(path: Path | None) -> Tokens:
    """The token file's hashes; none when it is missing or unreadable, bad entries skipped.

    Every problem is logged, not raised: ingest keeps serving (with fewer or no tokens)
    and the operator fixes the file, which is picked up without a restart.
    """
    if path is None:
        return Tokens()
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        return Tokens()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.error("token file %s unreadable, no tokens in force: %s", path, exc)
        return Tokens()
    booths: dict[str, str] = {}
    expires: dict[tuple[str, str], datetime] = {}
    for name, value in _table(doc, "booths", path).items():
        grant = _grant(value)
        if grant is None:
            log.error("token file %s: booth entry %r ignored (want \"<booth id>\" = "
                      "\"<sha256 hex>\" or {sha256 = \"<sha256 hex>\", expires = "
                      "<date-time with offset>})", path, name)
            continue
        booths[name] = grant.sha256
        if grant.expires is not None:
            expires[("booth", name)] = grant.expires
    channels: dict[str, str] = {}
    for name, value in _table(doc, "channels", path).items():
        grant = _grant(value)
        if grant is None or not _channel_name_ok(name):
            log.error("token file %s: channel entry %r ignored (want <channel>[:<integrator>] = "
                      "\"<sha256 hex>\" or a table {sha256, expires}, channel one of %s, "
                      "integrator of letters, digits and . _ / -)", path, name,
                      ", ".join(ONLINE_CHANNELS))
            continue
        channels[name] = grant.sha256
        if grant.expires is not None:
            expires[("channel", name)] = grant.expires
    return Tokens(booths, channels, expires)


def _grant(value: object) -> Grant | None:
    """An entry of the file (the hash, or a table of hash and expiry) or None if malformed.

    An expiry without an offset is malformed rather than read in some zone: a token
    that might outlive its intended end is not granted at all.
    """
    if isinstance(value, str):
        return Grant(value) if _HEX64.match(value) else None
    if not isinstance(value, dict) or not value.keys() <= {"sha256", "expires"}:
        return None
    digest, expires = value.get("sha256"), value.get("expires")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        return None
    if expires is not None and (not isinstance(expires, datetime) or expires.tzinfo is None):
        return None
    return Grant(digest, expires)


def _table(doc: Mapping[str, object], name: str, path: Path) -> Mapping[str, object]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        log.error("token file %s: [%s] is not a table, ignored", path, name)
        return {}
    return table


class TokenSource:
    """The tokens in force, re-read when the token file changes, appears or disappears.

    ``current()`` looks at the file at most every ``check_every_s`` seconds (a
    ``stat``), so it may be called per request. A change is any difference in
    modification time, size or inode, so an atomic replace within one timestamp
    tick is still seen. ``clock`` is injectable so a test can step time.
    """

    def __init__(self, path: Path | None, check_every_s: float = CHECK_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._watch = FileWatch(path, check_every_s, clock)
        self._path = path
        self._tokens = load_tokens(path)

    def current(self) -> Tokens:
        if self._watch.changed():
            self._tokens = load_tokens(self._path)
            log.info("token file %s reloaded: %d booth and %d channel tokens in force", self._path,
                     len(self._tokens.booths), len(self._tokens.channels))
        return self._tokens


def write_tokens_file(path: Path, booths: Mapping[str, str | Grant] | None = None,
                      channels: Mapping[str, str | Grant] | None = None) -> None:
    """Merge token *hashes* into ``path`` (atomic replace), keeping the entries already there.

    An entry is a hash or a :class:`Grant` (hash and expiry); entries already in the
    file keep their form, expiry included.
    """
    current: dict[str, dict[str, object]] = {"booths": {}, "channels": {}}
    if path.exists():
        loaded = tomllib.loads(path.read_text())
        for table in current:
            current[table].update(loaded.get(table, {}))
    current["booths"].update(booths or {})
    current["channels"].update(channels or {})
    lines = ["# rekap token hashes (SHA-256). Never store the tokens themselves."]
    for table, entries in current.items():
        lines.append(f"[{table}]")
        lines += [f"{json.dumps(name)} = {_entry_text(value)}"
                  for name, value in sorted(entries.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def _entry_text(value: object) -> str:
    """One entry as TOML: the plain hash, or the table form when it carries an expiry."""
    if isinstance(value, Grant):
        value = {"sha256": value.sha256, "expires": value.expires}
    if isinstance(value, dict):
        if value.get("expires") is None:
            return json.dumps(value["sha256"])
        # A TOML offset date-time is RFC 3339, which isoformat() of an aware datetime is.
        return (f"{{ sha256 = {json.dumps(value['sha256'])}, "
                f"expires = {value['expires'].isoformat()} }}")
    return json.dumps(value)


def issue_token(path: Path, name: str, registry: Registry, *,
                expires: datetime | None = None) -> str:
    """A fresh token for a booth of ``registry`` or a channel; only its hash goes to ``path``.

    ``name`` is a booth id, an online channel, or ``<channel>:<integrator>``; ``expires``
    (with a time zone) is when it stops working, never by default. Returns the token
    itself: the caller shows it once, it is stored nowhere.
    """
    if expires is not None and expires.tzinfo is None:
        raise ConfigError(f"expiry {expires.isoformat()} needs a UTC offset, e.g. "
                          "2022-06-06T22:00:00+07:00")
    token = new_token()
    grant = Grant(hash_token(token), expires)
    if name.split(":", 1)[0] in ONLINE_CHANNELS:
        if not _channel_name_ok(name):
            raise ConfigError(f"{name!r}: an integrator name is 1-80 letters, digits and . _ / -")
        write_tokens_file(path, channels={name: grant})
    elif name in registry.booths:
        write_tokens_file(path, booths={name: grant})
    else:
        raise ConfigError(f"{name!r} is neither a booth in the registry nor a channel "
                          f"({', '.join(ONLINE_CHANNELS)}, or <channel>:<integrator>)")
    return token


def issue_demo_tokens(registry: Registry, directory: Path) -> tuple[Path, Path]:
    """Fresh tokens for every booth and channel: hashes to a token file, plaintext to a 0600 file.

    Returns ``(hashes_path, secrets_path)``; point ``REKAP_BOOTH_TOKENS_PATH`` of
    ingest at the first. Both live in the runtime directory, which is never committed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    booth_tokens = {booth: new_token() for booth in sorted(registry.booths)}
    channel_tokens = {channel: new_token() for channel in ONLINE_CHANNELS}
    secrets_path = directory / DEMO_SECRETS
    fd = os.open(secrets_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"booths": booth_tokens, "channels": channel_tokens}, fh, indent=1)
    os.chmod(secrets_path, 0o600)
    hashes_path = directory / DEMO_HASHES
    if hashes_path.exists():
        hashes_path.unlink()
    write_tokens_file(hashes_path, {b: hash_token(t) for b, t in booth_tokens.items()},
                      {c: hash_token(t) for c, t in channel_tokens.items()})
    return hashes_path, secrets_path


def load_demo_secrets(path: Path) -> dict[str, dict[str, str]]:
    """The plaintext demo tokens ``issue_demo_tokens`` wrote: ``{"booths": ..., "channels": ...}``."""
    if not path.exists():
        raise ConfigError(f"no demo tokens at {path}: run `rekap simulate --issue-demo-tokens` "
                          "and start ingest with the token file it prints")
    data = json.loads(path.read_text())
    return {"booths": dict(data.get("booths", {})), "channels": dict(data.get("channels", {}))}
