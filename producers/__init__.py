"""Where sales enter: booth ingest and offline client, channel adapters, the simulator."""
