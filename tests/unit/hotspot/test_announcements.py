"""Announcements, the core (issue #15 item 3): the village's table and the province's list in
one answer, each notice marked by source; start and end honoured at the wall clock's now;
limits; a province entry that does not read is left out, never half-shown."""

from __future__ import annotations

import datetime as dt

import pytest

from hotspot import announcements as ann
from hotspot import audit
from hotspot.announcements import AnnouncementError, Source
from hotspot.audit import Actor

ADMIN = Actor("budi", 1, "admin", "10.10.0.50")
T0 = dt.datetime(2026, 11, 28, 3, 0)  # 10.00 WIB


def _add(db, text="Vaksinasi di puskesmas", start=T0, hours=4, en=None):
    return ann.add(db, text, en, start, start + dt.timedelta(hours=hours), actor=ADMIN, at=T0)


def test_shows_from_its_start_to_its_end(db):
    aid = _add(db, start=T0 + dt.timedelta(hours=1), hours=2)
    assert ann.active(db, T0) == []
    (n,) = ann.active(db, T0 + dt.timedelta(hours=1))
    assert (n.source, n.ref, n.text_id) == (Source.VILLAGE, str(aid), "Vaksinasi di puskesmas")
    assert ann.active(db, T0 + dt.timedelta(hours=2, minutes=59))
    assert ann.active(db, T0 + dt.timedelta(hours=3)) == []  # the end is exclusive


def test_a_clock_jump_back_shows_an_ended_notice_only_while_the_clock_is_wrong(db):
    """The wall clock at render is all there is: after a power cut without RTC the clock may
    say yesterday, and yesterday's notice shows again; once NTP sets it right, it is gone at
    the next page (nothing was cached), and a jump forward hides it for as long."""
    _add(db, hours=2)
    after_end = T0 + dt.timedelta(hours=5)
    assert ann.active(db, after_end) == []
    jumped_back = after_end - dt.timedelta(hours=4)
    assert len(ann.active(db, jumped_back)) == 1
    assert ann.active(db, after_end) == []
    assert ann.active(db, T0 + dt.timedelta(days=3650)) == []


def test_province_and_village_notices_merge_marked_by_source(db):
    _add(db, text="Pendaftaran SD dibuka")
    province = [
        {
            "id": "p-7",
            "text_id": "Posyandu serentak se-provinsi",
            "text_en": "Province-wide child health day",
            "starts": "2026-11-28T08:00:00+07:00",
            "ends": "2026-11-29T00:00:00+07:00",
        },
        {  # not yet
            "id": "p-8",
            "text_id": "Nanti",
            "starts": "2026-12-28T08:00:00Z",
            "ends": "2026-12-29T08:00:00Z",
        },
    ]
    shown = ann.active(db, T0, province)
    assert [(n.source, n.ref) for n in shown] == [(Source.PROVINCE, "p-7"), (Source.VILLAGE, "1")]
    assert shown[0].text("en") == "Province-wide child health day"
    assert shown[1].text("en") == "Pendaftaran SD dibuka"  # no English: the Indonesian
    assert shown[0].starts_at == dt.datetime(2026, 11, 28, 1, 0)  # WIB → UTC


@pytest.mark.parametrize(
    "entry",
    [
        {"id": "x", "text_id": "", "starts": "2026-11-28T00:00Z", "ends": "2026-11-29T00:00Z"},
        {"id": "x", "text_id": "a" * 281, "starts": "2026-11-28T00:00Z", "ends": "2026-11-29Z"},
        {"id": "x", "text_id": "ok", "starts": "kemarin", "ends": "2026-11-29T00:00Z"},
        {"id": "x", "text_id": "ok", "starts": "2026-11-29T00:00Z", "ends": "2026-11-28T00:00Z"},
        {"id": "x", "text_id": 5, "starts": "2026-11-28T00:00Z", "ends": "2026-11-29T00:00Z"},
        {"id": None, "text_id": "ok", "starts": "2026-11-28T00:00Z", "ends": "2026-11-29T00:00Z"},
        {"text_id": "no id", "starts": "2026-11-28T00:00Z", "ends": "2026-11-29T00:00Z"},
        {"id": "x", "text_id": "ok", "starts": "2026-11-28T00:00Z"},
        {
            "id": "x",
            "text_id": "ok",
            "text_en": ["?"],
            "starts": "2026-11-28T00:00Z",
            "ends": "2026-11-29T00:00Z",
        },
        "not a mapping",
    ],
)
def test_a_province_entry_that_does_not_read_is_left_out_and_the_rest_show(entry):
    good = {
        "id": "g",
        "text_id": "Baik",
        "starts": "2026-11-28T00:00Z",
        "ends": "2026-11-29T00:00Z",
    }
    shown = ann.province_notices([entry, good])
    assert [n.ref for n in shown] == ["g"]


def test_limits(db):
    for text, en, hours, field in [
        ("", None, 1, "text_id"),
        ("  \n\t ", None, 1, "text_id"),
        ("a" * 281, None, 1, "text_id"),
        ("ok", "b" * 281, 1, "text_en"),
        ("ok", None, 0, "ends"),
        ("ok", None, -1, "ends"),
        ("ok", None, 24 * 367, "ends"),
    ]:
        with pytest.raises(AnnouncementError) as err:
            _add(db, text=text, en=en, hours=hours)
        assert err.value.field == field
    assert ann.village_notices(db) == []
    # Folded: a pasted message's line breaks and control characters become single spaces.
    _add(db, text="Vaksin\r\n\x1b[31m  Sabtu", en="  ")
    (n,) = ann.village_notices(db)
    assert n.text_id == "Vaksin [31m Sabtu" and n.text_en is None


def test_at_most_five_show_and_the_table_is_bounded(db, monkeypatch):
    for i in range(7):
        _add(db, text=f"n{i}")
    assert [n.text_id for n in ann.active(db, T0)] == ["n0", "n1", "n2", "n3", "n4"]
    monkeypatch.setattr(ann, "MAX_ROWS", 7)
    with pytest.raises(ann.TooMany):
        _add(db, text="one too many")
    assert len(ann.village_notices(db)) == 7


def test_changes_are_audited(db):
    aid = _add(db)
    ann.update(db, aid, "Diganti", "Changed", T0, T0 + dt.timedelta(hours=1), actor=ADMIN, at=T0)
    ann.remove(db, aid, actor=ADMIN, at=T0)
    actions = [e.action for e in audit.entries(db)]
    assert sorted(actions) == ["announcement.add", "announcement.delete", "announcement.edit"]
    assert audit.verify(db) is None
