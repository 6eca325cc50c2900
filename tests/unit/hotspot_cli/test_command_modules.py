"""``hotspot`` imports only the module of the command group asked for (issue #12, item 3):
the table of modules and their groups in hotspot_cli/main.py must say what each registers."""

from __future__ import annotations

import argparse
import importlib

import pytest

from hotspot.commandline import Parser
from hotspot_cli.main import COMMAND_MODULES, build_parser, requested_group


def registered(module: str) -> tuple[str, ...]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="group", parser_class=Parser)
    importlib.import_module(module).register(sub, Parser)
    return tuple(sub.choices)


@pytest.mark.parametrize("module", sorted(COMMAND_MODULES))
def test_the_table_names_the_groups_each_module_registers(module):
    assert registered(module) == COMMAND_MODULES[module]


@pytest.mark.parametrize(
    ("argv", "group"),
    [
        (["gateway", "run"], "gateway"),
        (["--config", "/etc/hotspot/hotspot.toml", "clients", "list"], "clients"),
        (["--config=/x.toml", "portal", "run"], "portal"),
        (["--help"], None),
        ([], None),
    ],
)
def test_the_group_is_the_first_word_that_is_not_an_option(argv, group):
    assert requested_group(argv) == group


def test_a_known_group_gets_its_module_only_and_anything_else_all():
    only = build_parser(["--config", "x.toml", "gateway", "run"])
    subparsers = next(a for a in only._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == {"gateway", "clients", "trusted"}
    for argv in (["--help"], ["no-such-group"], None):
        full = build_parser(argv)
        subparsers = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
        assert set(subparsers.choices) == {g for gs in COMMAND_MODULES.values() for g in gs}
