"""Code that runs in Ray shard actors: one module per aggregate's ops (chat, posts, engagement, follows, profile and
presence, recommendations), their workers (the feed fan-out, retention), and the runtime (actors/runtime)."""
