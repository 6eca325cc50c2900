"""The BUMDes operator console: ``/operator/`` on the portal (docs/operator-console.md).

Who may come in
    Only addresses on the LAN (``[operator] allow_lan``), in ``[operator]
    management_networks`` or loopback; everyone else gets a 403 page before anything else
    happens. Then a login: a random token in the cookie ``hs_op`` (HttpOnly, SameSite=Strict,
    Path=/operator, Secure over HTTPS), its SHA-256 in ``operator_session``, ending after
    ``session_hours`` or ``idle_minutes`` without a request, and at once when the account's
    password, role or status changes.
Roles
    ``kasir`` sells, prints sheets, looks vouchers up and sees (and ends) sessions;
    ``admin`` does everything, including packages, batches, voids, the ledger, accounts and
    the audit log. An admin page asked for by a kasir is a 403 page. ``agen`` (a warung
    reselling vouchers) sees only *My stock* (``portal/operator/agents.py``): every page not
    in ``blueprint.AGENT_PAGES`` is a 403 page for them.
Every form carries the CSRF token (Flask-WTF); every money- or access-affecting action is
written to the audit log with the operator's name, role and address.
"""

# The pages, each module by area, all on the one blueprint ``bp``.
from portal.operator import (  # noqa: F401
    accounts,
    agents,
    announcements,
    audit_log,
    auth,
    batches,
    dashboard,
    packages,
    policy,
    receipts,
    sales,
    sessions,
    summary,
    trusted,
    vouchers,
)
from portal.operator.blueprint import bp, is_console_path, render_error

__all__ = ["bp", "is_console_path", "render_error"]
