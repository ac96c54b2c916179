"""``rekap booth``: the offline-first booth client (SQLite outbox, sync with retries)."""
