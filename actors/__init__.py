"""Ray side: shard actors hosting logical per-user / per-chat actors, and workers."""
