"""The words villagers use (issue #13 item 8): the glossary at the top of
docs/operator-guide.md, held in the Indonesian translations, the province's dashboard, the
templates and the Indonesian parts of the docs; and a ``.po`` that is exactly what
``python -m portal.i18n update`` makes of the code: every entry with its ``#:`` references,
no obsolete ``#~`` entries, no string the code no longer uses, none the code uses missing.

The last check fails on a branch that appended strings by hand until ``update`` is run once
more (after a merge, by the lead): that is intended.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

from collector.dashboard import T as COLLECTOR_WORDS
from portal import i18n

ROOT = Path(__file__).resolve().parents[3]
PO = i18n.TRANSLATIONS / "id" / "LC_MESSAGES" / "messages.po"

# A word that is not ours → the glossary's word. Case does not matter.
INDONESIAN_ONLY = [
    (r"\b(?:di|me|pe)?n?tarik(?:an|nya)?\b", "batalkan / dibatalkan (a withdrawn voucher)"),
    (r"\bmasa simpan", "masa berlaku sebelum dipakai"),
    (r"\bdaring\b|\bluring\b", "online / offline"),
    (r"\balamat pribadi\b|\bMAC pribadi\b", "alamat acak"),
    (r"\balamat perangkat keras\b|\balamat fisik\b", "kode unik perangkat (alamat MAC)"),
]
IN_SENTENCES = [
    (r"\blog-?(?:in|out)\w*|\blog (?:in|out)\b|\blogged in\b", "masuk / keluar"),
]
BANNED = [(re.compile(p, re.IGNORECASE), word) for p, word in INDONESIAN_ONLY + IN_SENTENCES]
BANNED_IN_TEMPLATES = [(re.compile(p, re.IGNORECASE), word) for p, word in INDONESIAN_ONLY]

# An English word in the source → what its Indonesian must say.
SAME_WORD = [
    (r"withdr", r"\bbatal|dibatalkan"),
    (r"shelf life", r"masa berlaku sebelum dipakai"),
    (r"\bonline\b", r"\bonline\b"),
    (r"\boffline\b", r"\boffline\b"),
    (r"private address", r"\balamat acak\b"),
    (r"(?:device|hardware) address", r"kode unik perangkat(?:nya)? \(alamat MAC\)"),
]
EXACT = {
    "Withdraw": "Batalkan",
    "Withdrawn": "Dibatalkan",
    "withdrawn": "dibatalkan",
    "Shelf life": "Masa berlaku sebelum dipakai",
    "private address": "alamat acak",
    "Device address (MAC)": "Kode unik perangkat (alamat MAC)",
    "Log in": "Masuk",
    "Log out": "Keluar",
    "offline": "offline",
}

# Markdown sections in Indonesian: a heading naming the language, or these.
INDONESIAN_HEADINGS = re.compile(r"Bahasa Indonesia|^Ringkasan untuk staf Diskominfo$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


def _catalog() -> Catalog:
    with PO.open("rb") as fh:
        return read_po(fh, locale="id")


def _entries(catalog: Catalog) -> Iterator[tuple[str, list[str], Message]]:
    for msg in catalog:
        if not msg.id:
            continue
        ids = list(msg.id) if isinstance(msg.id, (list, tuple)) else [msg.id]
        strings = list(msg.string) if isinstance(msg.string, (list, tuple)) else [msg.string]
        yield ids[0], strings, msg


def _key(msg: Message) -> str:
    return msg.id[0] if isinstance(msg.id, (list, tuple)) else msg.id


def _banned(text: str, rules: list[tuple[re.Pattern[str], str]]) -> list[str]:
    return [f"{m.group(0)!r} (say: {word})" for rx, word in rules for m in rx.finditer(text)]


def indonesian_lines(markdown: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of the Indonesian sections of a Markdown file, without code
    blocks, inline code and link targets (commands, keys and file names are not words)."""
    level = 0  # the heading level of the Indonesian section we are in; 0 = none
    fenced = False
    for number, line in enumerate(markdown.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        heading = HEADING.match(line)
        if heading:
            depth, title = len(heading.group(1)), heading.group(2)
            if level and depth <= level:
                level = 0
            if not level and INDONESIAN_HEADINGS.search(title):
                level = depth
            continue
        if level:
            yield number, re.sub(r"`[^`]*`|\]\([^)]*\)", " ", line)


# -- the translations -----------------------------------------------------------------------


def test_no_foreign_words_in_the_translations():
    problems = []
    for key, strings, _ in _entries(_catalog()):
        for s in strings:
            problems += [f"{key!r}: {b}" for b in _banned(s, BANNED)]
    assert problems == []


def test_one_english_word_has_one_indonesian_word():
    problems = []
    for key, strings, msg in _entries(_catalog()):
        ids = msg.id if isinstance(msg.id, (list, tuple)) else (msg.id,)
        for english, indonesian in SAME_WORD:
            if any(re.search(english, i, re.IGNORECASE) for i in ids):
                problems += [
                    f"{key!r} → {s!r} lacks /{indonesian}/"
                    for s in strings
                    if not re.search(indonesian, s, re.IGNORECASE)
                ]
        if key in EXACT and strings != [EXACT[key]]:
            problems.append(f"{key!r} → {strings!r}, the glossary says {EXACT[key]!r}")
    assert problems == []
    assert set(EXACT) <= {key for key, _, _ in _entries(_catalog())}


def test_every_entry_has_its_source_references_and_none_is_obsolete():
    catalog = _catalog()
    assert not catalog.obsolete
    assert "\n#~" not in PO.read_text(encoding="utf-8")
    unplaced = [key for key, _, msg in _entries(catalog) if not msg.locations]
    assert unplaced == [], "no #: reference (python -m portal.i18n update adds them)"


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> dict[str, set[str]]:
    """msgid → the files that use it, as ``update`` extracts them now."""
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    i18n.extract(pot)
    with pot.open("rb") as fh:
        template = read_po(fh)
    return {_key(m): {f for f, _ in m.locations} for m in template if m.id}


def test_the_po_has_exactly_the_strings_the_code_uses(extracted):
    """Run ``python -m portal.i18n update`` (then translate and compile) when this fails."""
    have = {key: {f for f, _ in msg.locations} for key, _, msg in _entries(_catalog())}
    assert sorted(set(have) - set(extracted)) == [], "unused: the code no longer has them"
    assert sorted(set(extracted) - set(have)) == [], "used by the code, not in the .po"
    moved = {k: (sorted(have[k]), sorted(extracted[k])) for k in have if have[k] != extracted[k]}
    assert moved == {}, "#: references out of date"


def test_the_committed_template_is_the_extracted_one(extracted):
    with i18n.POT.open("rb") as fh:
        committed = {_key(m) for m in read_po(fh) if m.id}
    assert committed == set(extracted)


# -- the province's dashboard, the templates, the docs -----------------------------------------


def test_the_collector_dashboard_says_online_and_offline():
    assert COLLECTOR_WORDS["online"]["id"] == "online"
    assert COLLECTOR_WORDS["offline"]["id"] == "offline"
    problems = []
    for key, words in COLLECTOR_WORDS.items():
        problems += [f"{key}: {b}" for b in _banned(words["id"], BANNED)]
    assert problems == []


def test_no_indonesian_stray_words_in_templates():
    problems = []
    for path in sorted((ROOT / "portal" / "templates").rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        problems += [f"{path.relative_to(ROOT)}: {b}" for b in _banned(text, BANNED_IN_TEMPLATES)]
    assert problems == []


def test_indonesian_parts_of_the_docs_use_the_glossary():
    docs = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
    problems, seen = [], 0
    for path in docs:
        for number, line in indonesian_lines(path.read_text(encoding="utf-8")):
            seen += 1
            problems += [f"{path.relative_to(ROOT)}:{number}: {b}" for b in _banned(line, BANNED)]
    assert seen > 300  # the operator guide's Indonesian half alone is longer
    assert problems == []


def test_indonesian_sections_are_found():
    text = "\n".join(
        [
            "# Guide",
            "## Bahasa Indonesia",
            "Silakan login.",
            "### Sub",
            "Voucher `ditarik` di kode.",
            "```",
            "login",
            "```",
            "## English",
            "Log in here.",
            "## Ringkasan untuk staf Diskominfo",
            "desa daring",
        ]
    )
    lines = dict(indonesian_lines(text))
    assert set(lines) == {3, 5, 12}
    assert _banned(lines[3], BANNED) and not _banned(lines[5], BANNED)
    assert _banned(lines[12], BANNED)
