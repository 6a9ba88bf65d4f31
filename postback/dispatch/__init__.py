"""The delivery engine: claim due deliveries, send them, record what happened, sweep old data."""
