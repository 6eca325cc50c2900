"""The sync agent: reports usage, health and sales of one gateway to the provincial collector.

* :mod:`sync.wire` — the protocol both sides speak: signing, compression, record schemas.
* :mod:`sync.outbox` — the reporter (database → outbox) and batches (outbox → request body).
* :mod:`sync.agent` — delivery with retries, backoff and jitter (``hotspot sync run|once``).
* :mod:`sync.health`, :mod:`sync.sales`, :mod:`sync.pseudonym`, :mod:`sync.purge`.

See docs/sync-and-collector.md.
"""
