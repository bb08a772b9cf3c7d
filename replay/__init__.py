"""The sharded replay service, domain-agnostic: it knows a table's ``Signature``, never the grasp cell.

A shard (``server.py`` around the pure ``table.py``: storage, FIFO remover, per-tier samplers;
``rate_limiter.py``; ``checkpoint.py``), its clients (``client.py``: ``ReplayWriter`` for actors,
``ReplaySampler`` for the learner), the chunk builder they share with the in-process sink
(``chunker.py``, ``local.py``), its generated protocol code (``v1/``, ``codegen.py``) and its entry
point (``python -m replay serve``).
"""
