"""Vouchers: packages, batches of codes, selling, withdrawing, and redemption exactly once.

One module per job; callers import a name from the module that owns it:

``codes``       the alphabet, normalising what a villager types, printing, hashing, deriving
``keys``        the voucher key file (and the portal's cookie secret): load, or create once
``packages``    packages: the file's written into the database, the console's saved; listings
``batches``     making batches, printing their codes again, listing them
``redemption``  :class:`VoucherService`: a code on a device, exactly once; the guessing brake
``lookup``      a voucher by code, its state, the console's detail
``sales``       marking sold (one, a range), undoing a mistaken mark
``withdrawal``  voiding one or a batch; unsold stock past its shelf life
``ledger``      what counts as a sale, the ledger views, the cash count, the month report
``agents``      agents (warung resellers): batches given at the agent's price, their sales,
                payments, the ledger per agent
``online``      online time of online-time vouchers: what the gateway reads and writes
``errors``      :class:`VoucherError`, the base of the domain's refusals

Used by the portal (redemption), the operator console and the CLI (the rest). Every function
that changes money or access takes an ``actor`` and writes the audit log in the same
transaction (:mod:`hotspot.audit`). Kernel-free: the gateway is reached only through an
object with ``call(op, **args)``.

The names below are the package's public face (what callers outside it use); new code
imports from the owning module.
"""

from hotspot.vouchers.batches import (
    Batch,
    batch_codes,
    batch_info,
    batch_vouchers,
    create_batch,
    create_batch_audited,
    list_batches,
)
from hotspot.vouchers.codes import ALPHABET, CODE_LENGTH, code_hash, format_code, normalize_code
from hotspot.vouchers.errors import VoucherError
from hotspot.vouchers.keys import load_key
from hotspot.vouchers.lookup import find_voucher, voucher_detail, voucher_state
from hotspot.vouchers.packages import (
    PACKAGE_NAME,
    PackageError,
    PackageInfo,
    all_packages,
    get_package,
    get_package_title,
    list_packages,
    save_package,
    sync_packages,
)
from hotspot.vouchers.redemption import (
    BIND_LEASE_SECONDS,
    TAKEOVER_SECONDS,
    BrakeScope,
    RateLimited,
    Redemption,
    VoucherService,
)
from hotspot.vouchers.sales import SaleError, cancel_sale, mark_batch_sold, mark_sold
from hotspot.vouchers.withdrawal import expire_unsold, void_batch, void_one, void_voucher

__all__ = [
    "ALPHABET",
    "BIND_LEASE_SECONDS",
    "TAKEOVER_SECONDS",
    "BrakeScope",
    "CODE_LENGTH",
    "PACKAGE_NAME",
    "Batch",
    "PackageError",
    "PackageInfo",
    "RateLimited",
    "Redemption",
    "SaleError",
    "VoucherError",
    "VoucherService",
    "all_packages",
    "batch_codes",
    "batch_info",
    "batch_vouchers",
    "cancel_sale",
    "code_hash",
    "create_batch",
    "create_batch_audited",
    "expire_unsold",
    "find_voucher",
    "format_code",
    "get_package",
    "get_package_title",
    "list_batches",
    "list_packages",
    "load_key",
    "mark_batch_sold",
    "mark_sold",
    "normalize_code",
    "save_package",
    "sync_packages",
    "void_batch",
    "void_one",
    "void_voucher",
    "voucher_detail",
    "voucher_state",
]
