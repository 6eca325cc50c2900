"""Voucher codes: the alphabet, what a villager types → the bare code, how a code is printed,
its keyed lookup hash and its derivation from the key (no database here).

Codes
    10 symbols from a 31-symbol alphabet without the look-alikes 0/O and 1/I/L (digits 2–9
    and the letters A–Z but I, L, O): 31**10 ≈ 2**49.5 codes. Shown as ``ABCD-EFGH-JK``.
    What a villager types is forgiving: case, spaces and dashes are ignored. A look-alike
    symbol cannot be entered by mistake for a valid one, because no code contains one.

Storage
    The database never holds a code, only ``HMAC-SHA256(key, code)`` (the lookup hash).
    The key is a file outside the database (``[portal] voucher_key_file``), so a copied or
    leaked database reveals no unsold code, and a guess cannot be checked offline.
    Codes are *derived*: ``code = HMAC(key, "code|" + batch salt + "|" + serial)`` mapped
    onto the alphabet. Whoever has both the key and the database can print a batch's sheet
    again (:func:`hotspot.vouchers.batches.batch_codes`); a random per-batch salt keeps
    future batches unguessable even from the key alone.
"""

from __future__ import annotations

import hashlib
import hmac

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10
GROUPS = (4, 4, 2)
CODE_BITS = CODE_LENGTH * 4.954  # log2(31) per symbol: 49.5 bits

_IGNORED = str.maketrans("", "", " -_.\t\n\r\u00a0\u2010\u2011\u2012\u2013\u2014")


def normalize_code(text: str) -> str | None:
    """What the user typed → the bare code, or None when it cannot be a code."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    bare = text.translate(_IGNORED).upper()
    if len(bare) != CODE_LENGTH or any(ch not in ALPHABET for ch in bare):
        return None
    return bare


def format_code(code: str) -> str:
    """``ABCDEFGHJK`` → ``ABCD-EFGH-JK`` (how it is printed and shown)."""
    parts, i = [], 0
    for size in GROUPS:
        parts.append(code[i : i + size])
        i += size
    return "-".join(parts)


def code_hash(key: bytes, code: str) -> str:
    return hmac.new(key, b"lookup|" + code.encode(), hashlib.sha256).hexdigest()


def derive_code(key: bytes, salt: str, serial: int) -> str:
    digest = hmac.new(key, f"code|{salt}|{serial}".encode(), hashlib.sha256).digest()
    n = int.from_bytes(digest, "big")  # 256 bits onto 31**10 (≈2**49.5): bias < 2**-200
    out = []
    for _ in range(CODE_LENGTH):
        n, r = divmod(n, len(ALPHABET))
        out.append(ALPHABET[r])
    return "".join(out)
