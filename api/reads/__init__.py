"""The read side in api processes: queries that go straight to storage (and its caches), never through a shard."""
