"""Maintaining the translations: ``python3 -m portal.i18n update|compile|check``.

Source strings are English; ``translations/id`` holds Bahasa Indonesia, the default language.
The compiled ``messages.mo`` is committed next to its ``.po``, so a fresh clone works after
``pip install -e .`` with no build step; ``check`` (also a unit test) fails when the ``.mo``
is stale or a string lacks its translation.

    update   extract the strings from the code and templates, merge them into the .po
    compile  .po → .mo
    check    every string translated, nothing fuzzy, .mo up to date

What ``update`` writes, and why, so that a diff of the ``.po`` shows only real changes:

- entries sorted by msgid (``--sort-output``): a string keeps its place whatever file moves;
- a ``#:`` reference per file that uses the string, without line numbers
  (``--add-location=file``): a translator sees where a string is shown, and an edit that only
  shifts lines does not rewrite hundreds of references;
- no obsolete ``#~`` entries (``--ignore-obsolete``): a string the code no longer uses leaves the
  ``.po`` (tests/unit/portal/test_words.py fails while the ``.po`` holds a string the code does
  not extract, so a branch that adds strings by hand is finished by one ``update``);
- the header's POT-Creation-Date is kept (``--ignore-pot-creation-date``), as is the wrapping
  at 76 columns that babel and gettext both use.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

HERE = Path(__file__).resolve().parent
TRANSLATIONS = HERE / "translations"
POT = TRANSLATIONS / "messages.pot"
LANGS = ("id",)


def _babel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "-q", *args])


def extract(pot: Path) -> None:
    """Write every string the portal's code and templates use to ``pot``."""
    # From the repository root with "." as the input, so that the references read
    # "portal/…" wherever the checkout lives.
    with contextlib.chdir(HERE.parent):
        _babel(
            "extract",
            "-F",
            str(HERE / "babel.cfg"),
            "-k",
            "_",
            "-k",
            "gettext",
            "-k",
            "ngettext:1,2",
            "--add-location=file",
            "--sort-output",
            "--omit-header",
            "-o",
            str(pot),
            ".",
        )


def update() -> None:
    extract(POT)
    for lang in LANGS:
        _babel(
            "update",
            "-i",
            str(POT),
            "-d",
            str(TRANSLATIONS),
            "-l",
            lang,
            "--no-fuzzy-matching",
            "--ignore-obsolete",
            "--ignore-pot-creation-date",
        )


def compile_catalogs() -> None:
    for lang in LANGS:
        _babel("compile", "-d", str(TRANSLATIONS), "-l", lang)


def _t(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def check() -> list[str]:
    problems = []
    for lang in LANGS:
        po_path = TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po"
        mo_path = po_path.with_suffix(".mo")
        with po_path.open("rb") as fh:
            po = read_po(fh, locale=lang)
        for msg in po:
            if not msg.id:
                continue
            strings = msg.string if isinstance(msg.string, tuple) else (msg.string,)
            if not all(strings):
                problems.append(f"{lang}: untranslated: {msg.id!r}")
            if msg.fuzzy:
                problems.append(f"{lang}: fuzzy: {msg.id!r}")
        if not mo_path.exists():
            problems.append(f"{lang}: {mo_path.name} missing: python3 -m portal.i18n compile")
            continue
        with mo_path.open("rb") as fh:
            mo = read_mo(fh)
        want = {_t(m.id): _t(m.string) for m in po if m.id and not m.fuzzy}
        have = {_t(m.id): _t(m.string) for m in mo if m.id}
        if want != have:
            problems.append(f"{lang}: {mo_path.name} is stale: python3 -m portal.i18n compile")
    return problems


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "check"
    if cmd == "update":
        update()
    elif cmd == "compile":
        compile_catalogs()
    elif cmd == "check":
        problems = check()
        print("\n".join(problems) or "translations complete and compiled")
        return 1 if problems else 0
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
