"""CSV cells a spreadsheet will not run: the one neutraliser of CSV injection.

Excel, LibreOffice and Google Sheets treat a cell that starts with ``=``, ``+``, ``-`` or
``@`` as a formula (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``), and a leading tab or
carriage return can hide such a start. A voucher note, a village name or a gateway's
reported text can come from anyone, so every CSV the project serves (the operator console's
exports, the pull APIs of the gateway and of the collector) writes its text cells through
:func:`neutralize`: a leading apostrophe makes the cell text.
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: Any) -> Any:
    """``value`` with a ``'`` in front if it is text a spreadsheet would run; else as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
