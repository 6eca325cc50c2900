"""The captive portal: an unprivileged Flask app under gunicorn.

``gunicorn 'portal:create_app()'`` or ``hotspot portal run``. It reaches the network only
through the gateway's control socket (:mod:`hotspot.control`).
"""

from portal.app import create_app

__all__ = ["create_app"]
