"""Device makers, private addresses, lease names, speeds; the [operator] section."""

from __future__ import annotations

import pytest

from hotspot import config as config_mod
from hotspot.errors import ConfigError
from portal.operator import devices, svg


@pytest.mark.parametrize(
    "mac,vendor",
    [
        ("a4:5e:60:12:34:56", "Apple"),
        ("28:6c:07:00:00:01", "Xiaomi"),
        ("8c:77:12:00:00:01", "Samsung"),
        ("02:00:00:00:00:01", devices.PRIVATE),
        ("da:a1:19:00:00:01", devices.PRIVATE),
        ("00:00:5e:00:00:01", None),
    ],
)
def test_vendor_from_oui(mac, vendor, monkeypatch):
    monkeypatch.setattr(devices, "IEEE_CSV", devices.IEEE_CSV.with_name("absent.csv"))
    monkeypatch.setattr(devices, "_table", None)
    assert devices.vendor(mac) == vendor


def test_the_table_has_the_vendors_of_indonesian_villages():
    from portal.operator.oui_table import VENDORS

    for name in (
        "Samsung",
        "Xiaomi",
        "OPPO",
        "vivo",
        "realme",
        "Apple",
        "Huawei",
        "TP-Link",
        "ASUS",
        "Nokia / HMD",
        "Lenovo / Motorola",
        "Transsion (Infinix, Tecno, itel)",
    ):
        assert len(VENDORS[name].split()) > 0, name


def test_leases(tmp_path):
    path = tmp_path / "leases"
    leases = devices.Leases(str(path))
    assert leases.names() == {}
    path.write_text(
        "1 02:00:00:00:00:01 10.10.0.11 hp-siti *\n2 02:00:00:00:00:02 10.10.0.12 * *\ngarbage\n"
    )
    assert leases.names() == {"02:00:00:00:00:01": "hp-siti"}
    assert devices.Leases("").names() == {}


def test_rates():
    r = devices.Rates()
    assert r.update([{"id": 1, "bytes_down": 0, "bytes_up": 0}], now=100.0) == {}
    got = r.update([{"id": 1, "bytes_down": 1_000_000, "bytes_up": 250_000}], now=110.0)
    assert got == {1: (800_000, 200_000)}


def test_svg_is_escaped_and_static():
    chart = str(svg.bars([("<b>", 5, "<script>")], title="x<y"))
    assert "<script>" not in chart and "&lt;script&gt;" in chart and "style" not in chart
    q = str(svg.qr("http://10.10.0.1:8080/?code=ABCD-EFGH-JK", "ABCD-EFGH-JK"))
    assert q.startswith('<svg class="qr"') and "<path" in q and "style" not in q


def test_qr_decodes_to_the_portal_url():
    import segno

    text = "http://10.10.0.1:8080/?code=ABCD-EFGH-JK"
    ref = segno.make_qr(text, error="m", boost_error=False)
    mine = str(svg.qr(text))
    dark = sum(sum(1 for b in row if b) for row in ref.matrix)
    # every dark module is drawn once, as part of one run of its row
    runs = sum(
        int(seg.split("h")[1].split("v")[0])
        for seg in mine.split('d="')[1].split('"')[0].split("z")
        if seg
    )
    assert runs == dark


def test_operator_section_defaults_and_errors():
    o = config_mod.load().operator
    assert (o.enabled, o.sold_at, o.allow_lan, o.max_batch) == (True, "kasir", True, 1000)
    for bad, key in (
        ({"sold_at": "later"}, "operator.sold_at"),
        ({"management_networks": ["10.0.0.300/24"]}, "operator.management_networks[0]"),
        ({"nope": 1}, "operator.nope"),
        ({"allow_lan": "yes"}, "operator.allow_lan"),
        ({"max_batch": 10_000}, "operator.max_batch"),
        ({"session_hours": 0}, "operator.session_hours"),
        ({"leases_file": "leases"}, "operator.leases_file"),
    ):
        with pytest.raises(ConfigError) as err:
            config_mod.load(overrides={"operator": bad})
        assert err.value.key == key, err.value.message
    o = config_mod.load(
        overrides={
            "operator": {
                "sold_at": "first-use",
                "leases_file": "",
                "management_networks": ["192.168.88.0/24"],
            }
        }
    ).operator
    assert (
        o.sold_at == "first-use"
        and o.leases_file == ""
        and o.management_networks == ("192.168.88.0/24",)
    )


def test_console_can_be_switched_off(app, cfg):
    object.__setattr__(cfg.operator, "enabled", False)
    r = app.test_client().get(
        "/operator/login",
        base_url="http://10.10.0.1:8080",
        environ_base={"REMOTE_ADDR": "10.10.0.40"},
    )
    assert r.status_code == 404
