"""What every package's ``hotspot …`` subcommands share: the parser class that fails with one
line and exit 2, argument types, and printing a result as JSON or as text.

Each package registers its own subcommands (``register(sub, parser_class)``) and sets a
``handler(args) -> int`` on them; ``hotspot_cli`` assembles and dispatches.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, NoReturn

from hotspot.errors import UsageError
from hotspot.mac import normalize_mac


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


Handler = Callable[[argparse.Namespace], int]


def mac_arg(value: str) -> str:
    try:
        return normalize_mac(value)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def whole_number(value: str, low: int, high: int, unit: str = "") -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not low <= n <= high:
        raise argparse.ArgumentTypeError(f"must be between {low} and {high}{unit}")
    return n


def print_result(data: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(human(data))
