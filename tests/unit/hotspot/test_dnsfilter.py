"""The blocklist parser and the resolvers' generations (hotspot/dnsfilter.py)."""

from __future__ import annotations

import hashlib
import os

import pytest

from hotspot import dnsfilter

TRUST_POSITIF = (
    """\ufeff# Daftar TRUST+ Positif (contoh)
; another comment style

Example.COM
example.com.
www.example.com
judi-online.example
*.wild.example
0.0.0.0 hosts-style.example
127.0.0.1 also-hosts.example
http://url-form.example/path?q=1
contoh.example # an inline comment
bücher.example
192.0.2.7
localhost
bad_name!.example
-leading.example
a..b.example
two words.example
"""
    + ("x" * 300)
    + ".example\n"
)


def test_the_positif_format_is_read_and_bad_lines_are_counted_not_fatal():
    parsed = dnsfilter.parse_blocklist(TRUST_POSITIF.splitlines())
    assert parsed.names == sorted(
        [
            "example.com",  # case and the trailing dot folded; www.example.com is covered
            "judi-online.example",
            "wild.example",
            "hosts-style.example",
            "also-hosts.example",
            "url-form.example",
            "contoh.example",
            "xn--bcher-kva.example",  # IDN: its ASCII form, what a resolver is asked
        ]
    )
    assert parsed.duplicates == 1
    assert parsed.covered == 1
    # An address, one label, bad characters, empty labels, two names, a name too long.
    assert parsed.invalid == 7
    assert parsed.first_invalid[0] == (14, "192.0.2.7")
    assert parsed.summary()["names"] == 8


def test_bytes_lines_and_undecodable_bytes():
    parsed = dnsfilter.parse_blocklist([b"good.example\n", b"\xff\xfe.example\n", b"\n"])
    assert parsed.names == ["good.example"]
    assert parsed.invalid == 1
    assert parsed.lines == 3


@pytest.mark.parametrize(
    "line",
    ["com", "example", "1.2.3.4", "::1", "a.b.123", "x" * 64 + ".example", "..", "*.", "é"],
)
def test_what_is_not_a_blockable_name(line):
    assert dnsfilter.normalise_name(line) is None


def test_a_parent_covers_its_subdomains_whatever_the_order():
    parsed = dnsfilter.parse_blocklist(["a.b.c.example", "c.example", "b.c.example", "d.example"])
    assert parsed.names == ["c.example", "d.example"]
    assert parsed.covered == 2


def test_a_list_that_is_not_the_named_one_is_refused(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"a.example\nb.example\n")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    dnsfilter.verify_list(path, sha, path.stat().st_size)
    with pytest.raises(dnsfilter.ListRefused, match="cut short"):
        dnsfilter.verify_list(path, sha, path.stat().st_size + 5)
    path.write_bytes(b"a.example\nb.examplf\n")  # same size, one byte changed
    with pytest.raises(dnsfilter.ListRefused, match="SHA-256"):
        dnsfilter.verify_list(path, sha, path.stat().st_size)


def settings(**over):
    base = dict(
        enabled=True,
        portal_ip="10.10.0.1",
        garden_domains=("walled.example",),
        nft_set_ref="inet#hotspot#walled_garden_dns",
        main_resolver="10.10.0.1",
        ntp_servers=("ntp.jambiprov.example",),
        fallback_ntp_servers=("0.id.pool.ntp.org",),
    )
    base.update(over)
    return dnsfilter.Settings(**base)


def test_render_puts_the_filter_and_the_garden_where_each_resolver_reads_them():
    files = dnsfilter.render(settings(), ["blocked.example", "walled.example"])
    main, walled = files[dnsfilter.MAIN_FILE], files[dnsfilter.WALLED_FILE]
    assert "nftset=/walled.example/4#inet#hotspot#walled_garden_dns" in main
    assert "address=/dns.google/\n" in main
    assert "address=/use-application-dns.net/\n" in main
    assert "server=/walled.example/10.10.0.1" in walled
    blocked = files[dnsfilter.BLOCKED_FILE]
    assert "address=/blocked.example/10.10.0.1\n" in blocked
    # A name of the walled garden is never blocked (the portal's own links need it).
    assert "walled.example" not in blocked
    assert "NTP=ntp.jambiprov.example" in files[dnsfilter.TIMESYNCD_FILE]
    off = dnsfilter.render(settings(enabled=False), ["blocked.example"])
    assert dnsfilter.BLOCKED_FILE not in off
    assert "address=" not in off[dnsfilter.MAIN_FILE]


def test_generations_switch_atomically_and_identical_content_is_the_same_one(tmp_path):
    first = dnsfilter.render(settings(), ["a.example"])
    gen1 = dnsfilter.install_generation(tmp_path, first)
    assert dnsfilter.current_generation(tmp_path) is None  # written, not yet current
    assert dnsfilter.switch_to(tmp_path, gen1) is None
    assert dnsfilter.current_generation(tmp_path) == gen1
    main = (tmp_path / "current" / dnsfilter.MAIN_FILE).read_text()
    # The blocklist is included by its generation's own path.
    assert f"conf-file={tmp_path}/gen-{gen1}/{dnsfilter.BLOCKED_FILE}" in main
    assert dnsfilter.install_generation(tmp_path, dict(first)) == gen1
    gen2 = dnsfilter.install_generation(tmp_path, dnsfilter.render(settings(), ["b.example"]))
    assert gen2 != gen1
    assert dnsfilter.switch_to(tmp_path, gen2) == gen1
    dnsfilter.prune(tmp_path, (gen2,))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("gen-")) == [
        f"gen-{gen2}"
    ]
    assert os.readlink(tmp_path / "current") == f"gen-{gen2}"


def test_a_generation_left_half_written_by_a_power_cut_is_written_again(tmp_path):
    files = dnsfilter.render(settings(), ["a.example"])
    gen = dnsfilter.generation_id(files)
    half = tmp_path / f"gen-{gen}"
    half.mkdir()
    (half / dnsfilter.MAIN_FILE).write_text("addr")  # cut mid-way, no .complete
    assert dnsfilter.install_generation(tmp_path, files) == gen
    assert (half / ".complete").exists()
    assert (half / dnsfilter.MAIN_FILE).read_text().startswith(dnsfilter.HEADER)
