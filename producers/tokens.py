"""Token files: hashes in a TOML file ingest reads, plaintext only in a private 0600 file.

``write_tokens_file`` merges ``[booths]`` and ``[channels]`` tables and keeps
whatever the file already holds (unlike a writer that knows only one table).
``issue_demo_tokens`` makes a token for every booth of the registry and every
online channel, for demos and the simulator's ``--via ingest`` mode.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from producers.ingest.auth import ONLINE_CHANNELS
from rekap.registry import Registry, hash_token, new_token

DEMO_HASHES = "demo-tokens.toml"
DEMO_SECRETS = "demo-tokens.secret.json"


def write_tokens_file(path: Path, booths: dict[str, str] | None = None,
                      channels: dict[str, str] | None = None) -> None:
    """Merge token *hashes* into ``path`` (atomic replace)."""
    current: dict[str, dict[str, str]] = {"booths": {}, "channels": {}}
    if path.exists():
        loaded = tomllib.loads(path.read_text())
        for table in current:
            current[table].update(loaded.get(table, {}))
    current["booths"].update(booths or {})
    current["channels"].update(channels or {})
    lines = ["# rekap token hashes (SHA-256). Never store the tokens themselves."]
    for table, entries in current.items():
        lines.append(f"[{table}]")
        lines += [f'"{name}" = "{digest}"' for name, digest in sorted(entries.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


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
    data = json.loads(path.read_text())
    return {"booths": dict(data.get("booths", {})), "channels": dict(data.get("channels", {}))}
