"""The sharded replay service: a shard (``server.py`` around the pure ``table.py``: storage,
FIFO remover, per-tier samplers; ``rate_limiter.py``; ``checkpoint.py``) and its clients
(``client.py``: ``ReplayWriter`` for actors, ``ReplaySampler`` for the learner)."""
