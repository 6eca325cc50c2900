"""Direct ESC/POS printing of one voucher receipt to a USB receipt printer attached to the
gateway (``[printer]``, off by default), through python-escpos. The console's receipt page
offers it when configured; the phone's browser and a Bluetooth printer need none of this.

The portal runs as the unprivileged user ``hotspot``: provisioning puts it in the group
``lp`` so that it may write to ``/dev/usb/lp0``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Characters per line of the printer's font A: 32 on 58 mm paper, 48 on 80 mm.
COLUMNS = {58: 32, 80: 48}


class PrinterError(Exception):
    """The printer could not print: missing, switched off, out of paper, not installed."""


@dataclass(frozen=True)
class Receipt:
    """What one receipt says, already in the operator's language."""

    village: str
    package: str
    price: str
    code: str
    qr_url: str
    validity: str
    instructions: str
    footer: str


def render(printer: Any, receipt: Receipt, width_mm: int = 58) -> None:
    """Write the receipt's ESC/POS commands to a python-escpos printer (File, Usb, Dummy)."""
    rule = "-" * COLUMNS.get(width_mm, 32)
    printer.set(align="center", bold=True, double_height=True, double_width=True)
    printer.text(f"{receipt.village}\n")
    printer.set(align="center", normal_textsize=True, bold=True)
    printer.text(f"{receipt.package}\n{receipt.price}\n")
    printer.set(align="center", normal_textsize=True, bold=False)
    printer.text(f"{rule}\n")
    # The printer draws the QR itself (GS ( k): no image to rasterise on the gateway.
    printer.qr(receipt.qr_url, size=6 if width_mm == 80 else 5, native=True)
    printer.set(align="center", bold=True, double_height=True, double_width=width_mm == 80)
    printer.text(f"{receipt.code}\n")
    printer.set(align="center", normal_textsize=True, bold=False)
    printer.text(f"{receipt.validity}\n{rule}\n")
    printer.set(align="left", normal_textsize=True)
    printer.text(f"{receipt.instructions}\n")
    printer.set(align="center", normal_textsize=True)
    printer.text(f"{receipt.footer}\n")
    printer.cut()


def print_receipt(device: str, receipt: Receipt, width_mm: int = 58) -> None:
    """Print on the character device ``device`` (e.g. /dev/usb/lp0). Every way this fails
    (no such device, no permission, paper out, the library missing) is a PrinterError."""
    try:
        from escpos.exceptions import Error as EscposError
        from escpos.printer import File
    except ImportError as exc:
        raise PrinterError("python-escpos is not installed") from exc
    try:
        printer = File(device, auto_flush=False)
        try:
            render(printer, receipt, width_mm)
            printer.flush()
        finally:
            printer.close()
    except (OSError, EscposError) as exc:
        log.warning("receipt printer %s: %s", device, exc)
        raise PrinterError(str(exc)) from exc
