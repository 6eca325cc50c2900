"""The pull APIs (``GET /api/v1/…``): the provincial collector's and each gateway's own usage
API speak the same shape, defined here once.

* ``from`` / ``to``: ISO 8601 times (``2026-11-28T10:00:00+07:00``) or dates (``2026-11-28``,
  midnight in the server's time zone); ``from`` inclusive, ``to`` exclusive.
* ``limit`` (default the server's page size) and ``cursor`` (opaque; take it from ``next``).
* ``format=json`` (default): ``{"items": [...], "next": "<URL of the next page>" | null}``;
  ``format=csv``: a header row and one row per item; the next page's URL is in the
  ``Link: <…>; rel="next"`` header (and ``X-Next-Page``).
* ``Authorization: Bearer <token>``.

:mod:`.query` reads a request's parameters and keyset cursors (no Flask), :mod:`.reply`
writes pages and errors (Flask), :mod:`.openapi` describes it all.
"""
