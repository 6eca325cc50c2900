"""The console and a clock nobody has set (issue #11, item 2): the overview says *Jam belum
sinkron* while the kernel's clock is not synchronised, and nothing when it is."""

from __future__ import annotations

import pytest

from hotspot import health


@pytest.mark.parametrize("synced, warned", [(False, True), (True, False), (None, False)])
def test_the_overview_says_when_the_clock_is_not_synchronised(admin, monkeypatch, synced, warned):
    monkeypatch.setattr(health, "clock_synchronised", lambda: synced)
    page = admin.get("/operator/").get_data(as_text=True)
    assert ('id="clock-warning"' in page) is warned
    assert ("Jam belum sinkron" in page) is warned
