"""Prometheus metrics of the api side of the shards (``actors/runtime/client.py``), exposed at ``GET /metrics``.

They live here, not in ``api``, because ``actors`` never imports ``api``. In the api processes
(``python -m api``) prometheus-client runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by the master
before the workers start: ``api/metrics_dir.py``), so every worker's observations are summed at scrape time;
elsewhere (tests, benchmarks, a shard process) they are plain in-process metrics nobody reads.

Hot path: one Ray call per micro-batch observes two histograms through children bound here, once (no label
lookup per call).
"""

from __future__ import annotations

from prometheus_client import Histogram

SHARD_BATCH_SIZE = Histogram(
    "i9lyfe_shard_batch_size",
    "Ops per batched shard call (ShardClient micro-batches: one Ray call each)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
SHARD_CALL_SECONDS = Histogram(
    "i9lyfe_shard_call_seconds",
    "Seconds per batched shard call (one Ray round trip), by outcome: ok, or error (the shard did not answer)",
    ["outcome"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SHARD_CALL_OK = SHARD_CALL_SECONDS.labels(outcome="ok")
SHARD_CALL_ERROR = SHARD_CALL_SECONDS.labels(outcome="error")
