"""When provision counts a unit as started: `systemctl` answers are parsed, never guessed.

The subprocess boundary is replaced by canned answers of a real systemd 252 (Debian 12)."""

from __future__ import annotations

import pytest

from provisioning.install import Host

NEVER_STARTED = "ConditionResult=no\nConditionTimestampMonotonic=0"
CONDITION_FAILED = "ConditionResult=no\nConditionTimestampMonotonic=1234567"
CONDITION_MET_BUT_DEAD = "ConditionResult=yes\nConditionTimestampMonotonic=1234567"


class AnsweringHost(Host):
    def __init__(self, is_active: str, shown: str) -> None:
        self.answers = {"is-active": is_active, "show": shown}

    def _systemctl(self, verb: str, unit: str, *options: str) -> str:
        return self.answers[verb]


@pytest.mark.parametrize(
    ("is_active", "shown", "started"),
    [
        ("active", NEVER_STARTED, True),
        # systemd-timesyncd in a container: ConditionVirtualization=!container was checked.
        ("inactive", CONDITION_FAILED, True),
        # systemd-networkd before its first start also says ConditionResult=no.
        ("inactive", NEVER_STARTED, False),
        ("failed", CONDITION_MET_BUT_DEAD, False),
        ("inactive", "", False),
        ("inactive", "ConditionResult=no\nConditionTimestampMonotonic=", False),
    ],
)
def test_only_a_checked_failed_condition_counts_as_started(
    is_active: str, shown: str, started: bool
) -> None:
    assert AnsweringHost(is_active, shown).unit_active("x.service") is started
