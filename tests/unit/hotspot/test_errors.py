"""The one registry of error codes (hotspot.errors.ErrorCode) and everything keyed by it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hotspot import errors
from hotspot.errors import ConfigError, ErrorCode, HotspotError, UsageError

ROOT = Path(__file__).resolve().parents[3]
SOURCES = (
    "hotspot",
    "gateway",
    "portal",
    "sync",
    "collector",
    "provisioning",
    "bench",
    "demo",
    "testsupport",
    "hotspot_cli",
)
REGISTRY = ROOT / "hotspot" / "errors.py"
# Files that still spell codes, left to the refactors that own them now (HotspotError checks
# each spelled code against the registry when the class is made or the error raised).
PENDING = {
    "testsupport/testbed.py": "a test harness; its own codes are registered and checked",
}
# Codes that are also the names of pages (portal MESSAGES kinds, HTTP 400/404) and of the
# pull API's errors: as codes they are found by the structural checks below.
ALSO_PAGE_NAMES = {ErrorCode.BAD_REQUEST, ErrorCode.NOT_FOUND, ErrorCode.NO_KEY}
CODES = {c.value for c in ErrorCode}


def test_every_code_has_a_family_and_a_meaning():
    for code in ErrorCode:
        assert issubclass(code.family, HotspotError), code
        assert code.meaning.strip(), code


def test_every_error_class_of_the_registry_module_is_a_family():
    classes = {
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, HotspotError)
    }
    assert classes == {code.family for code in ErrorCode}


def test_every_code_has_a_portal_page():
    from portal.captive import ERROR_PAGES, MESSAGES

    assert set(ERROR_PAGES) == set(ErrorCode)
    for code, (kind, status) in ERROR_PAGES.items():
        assert kind in MESSAGES, code
        assert 400 <= status < 600, code


def test_voucher_messages_are_keyed_by_voucher_codes():
    from portal.captive import VOUCHER_MESSAGES
    from portal.operator.vouchers import VOUCHER_ERRORS

    for table in (VOUCHER_MESSAGES, VOUCHER_ERRORS):
        assert all(isinstance(code, ErrorCode) and code.startswith("voucher-") for code in table)


def test_spelled_codes_are_checked_against_the_registry():
    spelled = HotspotError("x", code="quota-exhausted")  # type: ignore[arg-type]
    assert spelled.code is ErrorCode.QUOTA_EXHAUSTED
    with pytest.raises(ValueError):
        HotspotError("x", code="quota-exausted")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        type("Typo", (HotspotError,), {"code": "blocekd"})


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_cli_exit_status_follows_the_family(code, monkeypatch):
    from gateway import cli as gateway_cli
    from hotspot_cli import main as cli

    def refuse(args):
        if code.family is ConfigError:
            raise ConfigError("network.lan_address", "bad")
        raise code.family("refused", code=code)

    monkeypatch.setattr(gateway_cli, "_status", refuse)
    expected = 2 if issubclass(code.family, (UsageError, ConfigError)) else 1
    assert cli.main(["gateway", "status"]) == expected


# -- no code is spelled outside the registry -----------------------------------------------------


def _is_code_attribute(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "code") or (
        isinstance(node, ast.Name) and node.id == "code"
    )


def _strings(node: ast.AST) -> list[ast.Constant]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [n for elt in node.elts for n in _strings(elt)]
    return []


def spelled_codes(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[ast.Constant] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            # A code with a hyphen is never anything else.
            if (
                "-" in node.value
                and node.value in CODES
                and ErrorCode(node.value) not in ALSO_PAGE_NAMES
            ):
                found.append(node)
        elif isinstance(node, ast.keyword) and node.arg == "code":  # code="blocked"
            found += _strings(node.value)
        elif isinstance(node, ast.ClassDef):  # class X(HotspotError): code = "sync"
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "code" for t in stmt.targets
                ):
                    found += _strings(stmt.value)
        elif isinstance(node, ast.Compare):  # exc.code == "locked", exc.code in ("a", "b")
            operands = [node.left, *node.comparators]
            if any(_is_code_attribute(o) for o in operands):
                found += [s for o in operands for s in _strings(o)]
        elif isinstance(node, ast.Dict):  # {"code": "bad-request", ...}
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "code" and value is not None:
                    found += _strings(value)
    return sorted({(n.lineno, n.value) for n in found if n.value in CODES})


def test_the_checker_finds_spelled_codes():
    source = """
class Gone(HotspotError):
    code = "sync"
raise Refused("no", code="blocked")
if exc.code == "locked" or exc.code in ("tc", "nftables"): pass
reply = {"ok": False, "error": {"code": "internal"}}
MESSAGES = {"quota-exhausted": 1}
render_error("bad-request", 400)          # a page name: fine
EndReason.BLOCKED == "blocked"            # not a code position: fine
"""
    assert [v for _, v in spelled_codes(ast.parse(source))] == [
        "sync",
        "blocked",
        "locked",
        "nftables",
        "tc",
        "internal",
        "quota-exhausted",
    ]


def test_no_code_is_spelled_outside_the_registry():
    offenders = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if path == REGISTRY or rel in PENDING:
                continue
            for line, value in spelled_codes(ast.parse(path.read_text(), filename=rel)):
                offenders.append(f"{rel}:{line}: {value!r}")
    assert offenders == [], "use hotspot.errors.ErrorCode:\n" + "\n".join(offenders)


def test_pending_files_still_exist():
    """When a refactor moves one of them, this list must follow (or, better, shrink)."""
    for rel in PENDING:
        assert (ROOT / rel).exists(), f"{rel} moved: update PENDING in {__file__}"
