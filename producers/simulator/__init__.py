"""``rekap simulate``: the Lagawi Fest 2022 programme as a reproducible, seeded stream."""
