"""Domain operations the API and the CLI call: accounts, endpoints, messages, event types, batches.

Nothing here speaks HTTP or holds a database driver; storage is reached through ``postback.store.base``.
"""
