"""Channel adapters: a channel's own payload in, contract v1 sale dicts out (pure, no I/O)."""
