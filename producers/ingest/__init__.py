"""``rekap ingest``: the HTTP door for booths and channels into the sales topic."""
