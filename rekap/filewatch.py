"""Noticing that a file changed, cheaply enough to ask on every request.

The registry (:class:`rekap.registry.RegistrySource`) and the token file
(:class:`producers.tokens.TokenSource`) are re-read while processes run; each
decides what a failed read means for it, and both ask this one question.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

#: What identifies one version of a file: modification time, size and inode, so an atomic
#: replace within one timestamp tick is still seen. None: the file is missing or unreadable.
Stamp = tuple[int, int, int] | None


def stamp(path: Path | None) -> Stamp:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class FileWatch:
    """Whether ``path`` changed (appeared, disappeared, was replaced) since the last look.

    Looks (one ``stat``) at most every ``check_every_s`` seconds; ``clock`` is
    injectable so a test can step time.
    """

    def __init__(self, path: Path | None, check_every_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._check_every_s = check_every_s
        self._clock = clock
        self._stamp = stamp(path)
        self._checked_at = clock()

    def changed(self) -> bool:
        now = self._clock()
        if now - self._checked_at < self._check_every_s:
            return False
        self._checked_at = now
        current = stamp(self.path)
        if current == self._stamp:
            return False
        self._stamp = current
        return True
