from __future__ import annotations

import os
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rekap.errors import RegistryError
from rekap.registry import RegistrySource, build_registry, load_registry
from rekap.settings import DEFAULT_REGISTRY

CHAMPIONS = {"Lampung Ethnica", "Pisang Shamiya", "Littlemonq", "Rafins Snack", "Askha Jaya"}


def test_the_shipped_programme_matches_the_article() -> None:
    reg = load_registry(DEFAULT_REGISTRY)
    programme, expo = reg.events["lagawi-2022"], reg.events["lagawi-2022-kokas"]
    assert (programme.starts_on, programme.ends_on) == (date(2022, 3, 20), date(2022, 6, 17))
    assert (expo.starts_on, expo.ends_on) == (date(2022, 6, 1), date(2022, 6, 6))
    assert expo.parent == "lagawi-2022" and programme.parent is None
    assert len(programme.ikm) == 30 and expo.ikm == programme.ikm
    assert {i.name for i in reg.ikm.values() if i.champion} == CHAMPIONS
    assert reg.chain("lagawi-2022-kokas") == ("lagawi-2022-kokas", "lagawi-2022")
    assert reg.root("lagawi-2022-kokas") == "lagawi-2022"
    assert reg.children("lagawi-2022") == ("lagawi-2022-kokas",)
    assert all(b.event == "lagawi-2022-kokas" for b in reg.booths.values())
    # The exhibition was booths only; online orders belong to the programme itself.
    assert expo.channels == frozenset({"offline"})
    assert programme.channels == frozenset({"offline", "marketplace", "virtual_expo", "website"})


def _raw(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "events": [
            {"id": "p", "starts_on": date(2022, 1, 1), "ends_on": date(2022, 12, 31), "ikm": ["a", "b"]},
            {"id": "c", "parent": "p", "starts_on": date(2022, 6, 1), "ends_on": date(2022, 6, 6),
             "ikm": ["a"]},
        ],
        "ikm": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}],
        "booths": [{"id": "b1", "event": "c", "ikm": ["a"]}],
    }
    raw.update(changes)
    return raw


@pytest.mark.parametrize(("change", "message"), [
    ({"version": 2}, "version"),
    ({"ikm": [{"id": "a"}, {"id": "a"}]}, "appears twice"),
    ({"ikm": [{"id": "Not A Slug"}]}, "slug"),
    ({"booths": [{"id": "b1", "event": "nope", "ikm": ["a"]}]}, "unknown event"),
    ({"booths": [{"id": "b1", "event": "c", "ikm": ["b"]}]}, "not in event"),
    ({"events": [{"id": "p", "starts_on": date(2022, 2, 1), "ends_on": date(2022, 1, 1)}]},
     "ends before"),
    ({"events": [{"id": "p", "starts_on": "2022-01-01", "ends_on": date(2022, 1, 2)}]}, "TOML date"),
    ({"events": [{"id": "p", "timezone": "Mars/Olympus", "starts_on": date(2022, 1, 1),
                  "ends_on": date(2022, 1, 2)}]}, "time zone"),
    ({"events": [{"id": "x", "parent": "y", "starts_on": date(2022, 1, 1), "ends_on": date(2022, 1, 2)},
                 {"id": "y", "parent": "x", "starts_on": date(2022, 1, 1), "ends_on": date(2022, 1, 2)}],
      "booths": []}, "own ancestor"),
    ({"events": [{"id": "p", "starts_on": date(2022, 1, 1), "ends_on": date(2022, 1, 2),
                  "channels": ["offline", "fax"]}], "booths": []}, "channels must be"),
    ({"events": [{"id": "p", "starts_on": date(2022, 1, 1), "ends_on": date(2022, 1, 2),
                  "channels": []}], "booths": []}, "channels must be"),
    ({"events": [{"id": "p", "starts_on": date(2022, 1, 1), "ends_on": date(2022, 1, 2),
                  "channels": "offline"}], "booths": []}, "channels must be"),
    # A booth posts offline sales: its event must take them.
    ({"events": [{"id": "p", "starts_on": date(2022, 1, 1), "ends_on": date(2022, 1, 2),
                  "ikm": ["a"], "channels": ["website"]}],
      "booths": [{"id": "b1", "event": "p", "ikm": ["a"]}]}, "leave out 'offline'"),
])
def test_inconsistent_registries_are_refused_with_a_reason(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        build_registry(_raw(**change))


def test_child_ikm_must_take_part_in_the_parent() -> None:
    raw = _raw()
    raw["events"][0]["ikm"] = ["b"]
    with pytest.raises(RegistryError, match="not in its parent"):
        build_registry(raw)


def test_the_fingerprint_covers_the_registry_file_only(tmp_path: Path) -> None:
    """Tokens are not the registry's business: issuing one must not look like a registry change."""
    path = tmp_path / "registry.toml"
    path.write_text(DEFAULT_REGISTRY.read_text())
    assert load_registry(path).fingerprint == load_registry(DEFAULT_REGISTRY).fingerprint
    path.write_text(DEFAULT_REGISTRY.read_text() + '\n[[ikm]]\nid = "ikm-baru"\nname = "IKM Baru"\n')
    assert load_registry(path).fingerprint != load_registry(DEFAULT_REGISTRY).fingerprint


def test_registry_source_picks_up_changes_and_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    text = DEFAULT_REGISTRY.read_text()
    path.write_text(text)
    source = RegistrySource(path, check_every_s=0)
    assert "ikm-baru" not in source.current().ikm
    addition = '\n[[ikm]]\nid = "ikm-baru"\nname = "IKM Baru"\n'
    path.write_text(text + addition)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert "ikm-baru" in source.current().ikm
    path.write_text("this is = = not toml")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert "ikm-baru" in source.current().ikm  # the broken edit is ignored
