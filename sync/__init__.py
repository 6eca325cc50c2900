"""The sync agent: reports usage, health and sales of one gateway to the provincial collector.

* :mod:`sync.outbox` — the reporter (database → outbox) and batches (outbox → request body).
* :mod:`sync.agent` — delivery with retries, backoff and jitter (``hotspot sync run|once``).
* :mod:`sync.health`, :mod:`sync.sales`, :mod:`sync.purge`.

The protocol both sides speak (signing, compression, record schemas) is
:mod:`hotspot.wire`, and device pseudonyms are :mod:`hotspot.pseudonym`: the collector and the
portal use them too, and import only the core.

See docs/sync-and-collector.md.
"""
