"""RADIUS (issue #16): the pure parts every process shares.

* :mod:`hotspot.radius.attributes` — an Access-Accept's attributes → the session's limits
  (:class:`Grant`), our end reasons → Acct-Terminate-Cause, the accounting records' attributes.
* :mod:`hotspot.radius.packets` — the dictionary (``dictionary`` beside this file) and
  building/checking packets with pyrad: Access-Request with Message-Authenticator,
  Accounting-Request, the checks of a CoA/Disconnect-Request (authenticator, source, age,
  duplicates).
* :mod:`hotspot.radius.transport` — one request/reply exchange over UDP with a deadline, shared
  by the portal (Access-Request) and the gateway (accounting).
* :mod:`hotspot.radius.secret` — the shared secret, read from its own file.

The network conversations live where they belong: the portal asks (portal/radius_login.py),
the gateway accounts and listens for CoA/Disconnect (gateway/radius.py). See docs/radius.md.
"""
