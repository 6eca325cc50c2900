"""The voucher domain's base error: a code that cannot be used (the portal and the console
pick their message by its ``code``)."""

from __future__ import annotations

from hotspot.errors import ErrorCode, HotspotError


class VoucherError(HotspotError):
    """A code that cannot be used; ``code`` says why (the portal picks its message by it):

    ``voucher-unknown``   no such code (wrong, mistyped: one message for all of them)
    ``voucher-used``      used by another device (up to the package's limit)
    ``voucher-expired``   its time ran out, or it waited too long for its first use
    ``voucher-exhausted`` its data quota is used up
    ``voucher-void``      withdrawn by the BUMDes
    """

    code = ErrorCode.VOUCHER_UNKNOWN
