"""The dashboard for Diskominfo: every village at a glance, and one village in detail.

Bahasa Indonesia by default (``[collector] language``), English with ``?lang=en`` (remembered
in a cookie). Charts are inline SVG drawn here; the pages load nothing else. Unless
``dashboard_public = true``, a browser signs in with HTTP Basic: any user name, an API token
(``hotspot collector tokens create``) as the password.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    make_response,
    request,
    url_for,
)
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import queries
from collector.alerts import KIND_TEXT, count_open_alerts, open_alerts, recent_alerts
from collector.config import CollectorConfig
from collector.mapsvg import MapPoint, village_map
from collector.models import Gateway, GatewayCertificate, PolicyScope, UplinkOutage
from collector.policy import document_of
from collector.policy import show as show_policies
from collector.store import check_token
from hotspot import svgchart
from hotspot.pull_api import reply
from hotspot.timeutil import local_time, utcnow
from hotspot.units import fmt_bytes

bp = Blueprint("dashboard", __name__)

T: dict[str, dict[str, str]] = {
    "title_region": {"id": "{title} — Dasbor {region}", "en": "{title} — {region} dashboard"},
    "title_plain": {"id": "{title} — Dasbor provinsi", "en": "{title} — province dashboard"},
    "villages": {"id": "Desa", "en": "Villages"},
    "village": {"id": "Desa", "en": "Village"},
    "gateway": {"id": "Gateway", "en": "Gateway"},
    "last_seen": {"id": "Terakhir terlihat", "en": "Last seen"},
    "status": {"id": "Status", "en": "Status"},
    "online": {"id": "online", "en": "online"},
    "offline": {"id": "offline", "en": "offline"},
    "never_seen": {"id": "belum pernah", "en": "never"},
    "users_today": {"id": "Pengguna hari ini", "en": "Users today"},
    "users_yesterday": {"id": "Pengguna kemarin", "en": "Users yesterday"},
    "traffic_7d": {"id": "Data 7 hari", "en": "Traffic, 7 days"},
    "sales_month": {"id": "Penjualan bulan ini", "en": "Sales this month"},
    "warnings": {"id": "Peringatan", "en": "Warnings"},
    "none": {"id": "—", "en": "—"},
    "users_per_day": {"id": "Pengguna per hari", "en": "Users per day"},
    "traffic_per_day": {"id": "Data per hari", "en": "Traffic per day"},
    "download": {"id": "unduh", "en": "download"},
    "upload": {"id": "unggah", "en": "upload"},
    "sales_per_month": {"id": "Penjualan per bulan", "en": "Sales per month"},
    "month": {"id": "Bulan", "en": "Month"},
    "package": {"id": "Paket", "en": "Package"},
    "count": {"id": "Jumlah", "en": "Count"},
    "rupiah": {"id": "Rupiah", "en": "Rupiah"},
    "health": {"id": "Kesehatan perangkat", "en": "Device health"},
    "health_24h": {"id": "Kesehatan 24 jam terakhir", "en": "Health, last 24 hours"},
    "sampled_at": {"id": "Diukur", "en": "Sampled"},
    "cpu": {"id": "CPU", "en": "CPU"},
    "load": {"id": "Beban", "en": "Load"},
    "memory": {"id": "Memori", "en": "Memory"},
    "disk": {"id": "Disk", "en": "Disk"},
    "temperature": {"id": "Suhu", "en": "Temperature"},
    "uptime": {"id": "Menyala sejak", "en": "Up for"},
    "uplink": {"id": "Uplink", "en": "Uplink"},
    "uplink_ok": {"id": "tersambung", "en": "connected"},
    "uplink_down": {"id": "putus", "en": "down"},
    "latency": {"id": "Latensi", "en": "Latency"},
    "availability": {"id": "Ketersediaan uplink 24 jam", "en": "Uplink availability, 24 h"},
    "clients_online": {"id": "Perangkat online", "en": "Devices online"},
    "backlog": {"id": "Antrean laporan", "en": "Report backlog"},
    "w_never": {"id": "belum pernah melapor", "en": "never reported"},
    "w_offline": {"id": "offline", "en": "offline"},
    "w_disk": {"id": "disk hampir penuh", "en": "disk almost full"},
    "w_temp": {"id": "CPU panas", "en": "hot CPU"},
    "w_mem": {"id": "memori hampir habis", "en": "memory almost full"},
    "w_uplink": {"id": "uplink putus", "en": "uplink down"},
    "w_clock": {"id": "jam belum sinkron", "en": "clock not synchronised"},
    "clock": {"id": "Jam", "en": "Clock"},
    "clock_ntp": {"id": "sinkron (NTP)", "en": "synchronised (NTP)"},
    "clock_collector": {
        "id": "belum sinkron; diatur dari jam collector",
        "en": "not synchronised; set from the collector's time",
    },
    "clock_none": {"id": "belum sinkron", "en": "not synchronised"},
    "devices_per_month": {"id": "Perangkat per bulan", "en": "Devices per month"},
    "devices": {"id": "Perangkat", "en": "Devices"},
    "back": {"id": "← semua desa", "en": "← all villages"},
    "summary": {
        "id": "{online} dari {total} gateway online; {warned} dengan peringatan; "
        "penjualan bulan ini {sales}.",
        "en": "{online} of {total} gateways online; {warned} with warnings; "
        "sales this month {sales}.",
    },
    "province_users": {
        "id": "Pengguna per hari (seluruh desa)",
        "en": "Users per day (all villages)",
    },
    "province_traffic": {
        "id": "Data per hari (seluruh desa)",
        "en": "Traffic per day (all villages)",
    },
    "no_data": {"id": "belum ada data", "en": "no data yet"},
    "disabled": {"id": "dinonaktifkan", "en": "disabled"},
    "days": {"id": "hari", "en": "days"},
    "hours": {"id": "jam", "en": "hours"},
    "times_in": {"id": "Waktu dalam {tz}", "en": "Times in {tz}"},
    "overview": {"id": "Ringkasan", "en": "Overview"},
    "map": {"id": "Peta", "en": "Map"},
    "kabupaten": {"id": "Kabupaten", "en": "Regency (kabupaten)"},
    "kecamatan": {"id": "Kecamatan", "en": "District (kecamatan)"},
    "all": {"id": "semua", "en": "all"},
    "filter": {"id": "Saring", "en": "Filter"},
    "unplaced": {"id": "belum ditetapkan", "en": "not set"},
    "open_alerts": {"id": "Peringatan aktif", "en": "Open alerts"},
    "no_alerts": {"id": "tidak ada peringatan aktif", "en": "no open alerts"},
    "since": {"id": "Sejak", "en": "Since"},
    "kind": {"id": "Jenis", "en": "Kind"},
    "detail": {"id": "Keterangan", "en": "Detail"},
    "critical": {"id": "kritis", "en": "critical"},
    "alerts_village": {"id": "Peringatan desa ini", "en": "This village's alerts"},
    "cleared": {"id": "Selesai", "en": "Cleared"},
    "still_open": {"id": "masih aktif", "en": "still open"},
    "software": {"id": "Versi perangkat lunak", "en": "Software version"},
    "policy_version": {"id": "Versi kebijakan", "en": "Policy version"},
    "last_report": {"id": "Laporan terakhir", "en": "Last report"},
    "place": {"id": "Lokasi", "en": "Location"},
    "outages": {"id": "Gangguan uplink (30 hari)", "en": "Uplink outages (30 days)"},
    "started": {"id": "Mulai", "en": "Started"},
    "ended": {"id": "Berakhir", "en": "Ended"},
    "cause": {"id": "Penyebab", "en": "Cause"},
    "ongoing": {"id": "masih berlangsung", "en": "ongoing"},
    "cause_link": {"id": "kabel/link WAN", "en": "WAN link"},
    "cause_unreachable": {"id": "tidak terjangkau", "en": "unreachable"},
    "no_coords": {
        "id": "{n} desa belum punya koordinat (hotspot collector gateways set ID --lat --lon).",
        "en": "{n} villages have no coordinates (hotspot collector gateways set ID --lat --lon).",
    },
    "m_online": {"id": "online", "en": "online"},
    "m_offline": {"id": "offline", "en": "offline"},
    "m_alert": {"id": "ada peringatan", "en": "with an alert"},
    "m_disabled": {"id": "dinonaktifkan", "en": "disabled"},
    **{"a_" + k.value: v for k, v in KIND_TEXT.items()},
    # The province at full scale (issue #14): kabupaten summaries, villages paged
    "by_kabupaten": {"id": "Ringkasan per kabupaten", "en": "Summary per regency (kabupaten)"},
    "n_villages": {"id": "Jumlah desa", "en": "Villages"},
    "n_online": {"id": "Online", "en": "Online"},
    "n_warned": {"id": "Dengan peringatan", "en": "With warnings"},
    "attention": {"id": "Desa yang perlu perhatian", "en": "Villages needing attention"},
    "attention_more": {
        "id": "… dan {n} desa lagi: pilih kabupatennya.",
        "en": "… and {n} more: choose their kabupaten.",
    },
    "alerts_more": {"id": "… dan {n} peringatan lagi.", "en": "… and {n} more alerts."},
    "page_of": {"id": "Halaman {page} dari {pages}", "en": "Page {page} of {pages}"},
    "prev": {"id": "← sebelumnya", "en": "← previous"},
    "next": {"id": "berikutnya →", "en": "next →"},
    # The province's policy (issue #15)
    "policy": {"id": "Kebijakan provinsi", "en": "Province policy"},
    "policy_villages": {"id": "Kebijakan per desa", "en": "Policy per village"},
    "policy_published": {"id": "Versi diterbitkan", "en": "Version published"},
    "policy_running": {"id": "Versi berjalan", "en": "Version running"},
    "policy_behind": {"id": "belum diterapkan", "en": "not applied yet"},
    "policy_field": {"id": "Isian", "en": "Field"},
    "policy_value": {"id": "Nilai", "en": "Value"},
    # The gateway's HTTPS certificate through the collector (issue #15, item 4)
    "certificate": {"id": "Sertifikat HTTPS", "en": "HTTPS certificate"},
    "cert_until": {"id": "berlaku sampai", "en": "valid until"},
    "cert_none": {"id": "belum ada (HTTP biasa)", "en": "none yet (plain HTTP)"},
    "cert_installed": {"id": "Terpasang di gateway", "en": "Installed on the gateway"},
    "cert_mismatch": {
        "id": "berbeda dengan yang diterbitkan",
        "en": "differs from the one issued",
    },
    "cert_expiring": {"id": "segera kedaluwarsa", "en": "expires soon"},
    "cert_expired": {"id": "kedaluwarsa", "en": "expired"},
    "policy_source": {"id": "Dari", "en": "From"},
}

PAGE = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ heading }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:0 12px 40px;color:#222}
header{display:flex;justify-content:space-between;align-items:baseline;border-bottom:1px solid #ccc}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{padding:4px 6px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.on{color:#1a7f37;font-weight:600}.off{color:#b42318;font-weight:600}
.warn{display:inline-block;background:#fff3cd;color:#7a4d00;border-radius:3px;padding:0 4px;margin:1px;font-size:.85em}
.crit{display:inline-block;background:#fde2e1;color:#8a1c14;border-radius:3px;padding:0 4px;font-size:.85em}
tr.group th{background:#f4f7f9}
form.filter{margin:1em 0}form.filter select{max-width:14em}form.filter label{margin-right:12px}
.muted{color:#777}.chart{max-width:100%;height:auto}
nav a{margin-left:8px}
</style></head><body>
<header><h1>{{ heading }}</h1>
<nav><a href="{{ url_for('dashboard.index') }}">{{ t('overview') }}</a> <a href="{{ url_for('dashboard.village_map_page') }}">{{ t('map') }}</a> ·{% for code in ('id','en') %}{% if code == lang %}<b>{{ code|upper }}</b>{% else %}<a href="?lang={{ code }}">{{ code|upper }}</a>{% endif %}{% endfor %}</nav></header>
{{ body }}
<p class="muted">{{ t('times_in').format(tz=tz) }}</p>
</body></html>"""

FILTER = """
<form class="filter" method="get">
<label>{{ t('kabupaten') }} <select name="kabupaten"><option value="">{{ t('all') }}</option>
{% for k in places.kabupaten %}<option value="{{ k }}"{% if k == chosen.kabupaten %} selected{% endif %}>{{ k }}</option>{% endfor %}</select></label>
<label>{{ t('kecamatan') }} <select name="kecamatan"><option value="">{{ t('all') }}</option>
{% for k in places.kecamatan %}<option value="{{ k }}"{% if k == chosen.kecamatan %} selected{% endif %}>{{ k }}</option>{% endfor %}</select></label>
<button type="submit">{{ t('filter') }}</button></form>
"""

ALERTS = """
<h2>{{ t('open_alerts') }}</h2>
{% if alerts %}<table><tr><th>{{ t('since') }}</th><th>{{ t('village') }}</th><th>{{ t('kind') }}</th><th>{{ t('detail') }}</th></tr>
{% for a in alerts %}<tr><td>{{ when(a.raised_at) }}</td>
<td><a href="{{ url_for('dashboard.village', gateway_id=a.gateway_id) }}">{{ names.get(a.gateway_id) or a.gateway_id }}</a></td>
<td>{% if a.critical %}<span class="crit">{{ t('critical') }}</span> {% endif %}{{ t('a_' ~ a.kind.value) }}</td><td>{{ a.detail }}</td></tr>{% endfor %}
</table>{% if alerts_more %}<p class="muted">{{ t('alerts_more').format(n=alerts_more) }}</p>{% endif %}
{% else %}<p class="muted">{{ t('no_alerts') }}</p>{% endif %}
"""

# A province of many villages: a line per kabupaten and the villages needing attention; the
# villages themselves on each kabupaten's pages (an officer does not read 1,000 rows).
PROVINCE = """
<h2>{{ t('by_kabupaten') }}</h2>
<p>{{ t('summary').format(online=o.online, total=o.total, warned=o.warned, sales=rp(o.sales_month_rupiah)) }}</p>
<table><tr><th>{{ t('kabupaten') }}</th><th class="n">{{ t('n_villages') }}</th><th class="n">{{ t('n_online') }}</th><th class="n">{{ t('n_warned') }}</th>
<th class="n">{{ t('users_today') }}</th><th class="n">{{ t('traffic_7d') }}</th><th class="n">{{ t('sales_month') }}</th></tr>
{% for k in kabupaten_rows %}<tr><td><a href="?{{ {'kabupaten': k.name or ''}|urlencode }}">{{ k.name or t('unplaced') }}</a></td>
<td class="n">{{ num(k.villages) }}</td><td class="n">{{ num(k.online) }}</td><td class="n">{{ num(k.warned) }}</td>
<td class="n">{{ num(k.users_today) }}</td><td class="n">{{ hb(k.bytes_7d) }}</td><td class="n">{{ rp(k.sales) }}</td></tr>{% endfor %}
</table>
<h2>{{ t('attention') }}</h2>
{% if attention %}<table><tr><th>{{ t('village') }}</th><th>{{ t('kabupaten') }}</th><th>{{ t('last_seen') }}</th><th>{{ t('warnings') }}</th></tr>
{% for v in attention %}<tr><td><a href="{{ village_base ~ v.id }}">{{ v.village }}</a></td><td>{{ v.kabupaten or t('unplaced') }}</td><td>{{ when(v.last_seen) }}</td>
<td>{% for w in v.warnings %}<span class="warn">{{ t('w_' ~ w) }}</span>{% endfor %}</td></tr>{% endfor %}
</table>{% if attention_more %}<p class="muted">{{ t('attention_more').format(n=attention_more) }}</p>{% endif %}
{% else %}<p class="muted">{{ t('none') }}</p>{% endif %}
"""

PAGER = """{% if pages > 1 %}<p>{% if page > 1 %}<a href="?{{ dict(args, page=page - 1)|urlencode }}">{{ t('prev') }}</a> {% endif %}
{{ t('page_of').format(page=page, pages=pages) }}{% if page < pages %} <a href="?{{ dict(args, page=page + 1)|urlencode }}">{{ t('next') }}</a>{% endif %}</p>{% endif %}"""

OVERVIEW = (
    FILTER
    + ALERTS
    + """
{% if province %}"""
    + PROVINCE
    + """{% else %}
<h2>{{ t('villages') }}</h2>
<p>{{ t('summary').format(online=o.online, total=o.total, warned=o.warned, sales=rp(o.sales_month_rupiah)) }}</p>
<table>
<tr><th>{{ t('village') }}</th><th>{{ t('status') }}</th><th>{{ t('last_seen') }}</th>
<th class="n">{{ t('users_today') }}</th><th class="n">{{ t('users_yesterday') }}</th>
<th class="n">{{ t('traffic_7d') }}</th><th class="n">{{ t('sales_month') }}</th><th>{{ t('warnings') }}</th></tr>
{% for v in o.villages %}
{% if loop.first or (v.kabupaten, v.kecamatan) != (loop.previtem.kabupaten, loop.previtem.kecamatan) %}
<tr class="group"><th colspan="8">{{ t('kabupaten') }}: {{ v.kabupaten or t('unplaced') }} · {{ t('kecamatan') }}: {{ v.kecamatan or t('unplaced') }}</th></tr>{% endif %}
<tr><td><a href="{{ village_base ~ v.id }}">{{ v.village }}</a><br><span class="muted">{{ v.id }}</span></td>
<td>{% if v.disabled %}<span class="muted">{{ t('disabled') }}</span>{% elif v.online %}<span class="on">{{ t('online') }}</span>{% else %}<span class="off">{{ t('offline') }}</span>{% endif %}</td>
<td>{{ when(v.last_seen) }}</td>
<td class="n">{{ num(v.users_today) }}</td><td class="n">{{ num(v.users_yesterday) }}</td>
<td class="n">{{ hb(v.bytes_7d) }}</td><td class="n">{{ rp(v.sales_month_rupiah) }}<br><span class="muted">{{ num(v.sales_month_count) }}</span></td>
<td>{% for w in v.warnings %}<span class="warn">{{ t('w_' ~ w) }}</span>{% else %}<span class="muted">{{ t('none') }}</span>{% endfor %}</td></tr>
{% else %}<tr><td colspan="8" class="muted">{{ t('no_data') }}</td></tr>{% endfor %}
</table>
"""
    + PAGER
    + """{% endif %}
<h2>{{ t('province_users') }}</h2>{{ users_chart }}
<h2>{{ t('province_traffic') }}</h2>{{ traffic_chart }}
"""
    + """
{% if policies.gateways and policies.scopes %}<h2>{{ t('policy_villages') }}</h2>
<table><tr><th>{{ t('gateway') }}</th><th>{{ t('kecamatan') }}</th><th class="n">{{ t('policy_published') }}</th><th class="n">{{ t('policy_running') }}</th><th></th></tr>
{% for g in policies.gateways %}<tr><td><a href="{{ url_for('dashboard.village', gateway_id=g.id) }}">{{ g.id }}</a></td><td>{{ g.kecamatan or '—' }}</td>
<td class="n">{{ g.published or '—' }}</td><td class="n">{{ g.running or '—' }}</td>
<td>{% if g.published and g.running != g.published %}<span class="warn">{{ t('policy_behind') }}</span>{% endif %}</td></tr>{% endfor %}
</table>{% endif %}
"""
)

MAP = (
    FILTER
    + """
{{ map_svg }}
{% if unplaced %}<p class="muted">{{ t('no_coords').format(n=unplaced) }}</p>{% endif %}
"""
)

# An installed certificate this close to its end is shown in warning (the agent renews at
# two thirds of the lifetime or 30 days before: one still installed this late is stuck).
CERT_EXPIRING = dt.timedelta(days=7)


def installed_warnings(
    health: dict[str, Any], issued: GatewayCertificate | None, now: dt.datetime
) -> list[str]:
    """What the village page says about the certificate the gateway reports installed (its
    newest health sample): not the one issued (another name, an older one still in force, or
    not fetched yet), near its end, expired."""
    out: list[str] = []
    name, until = health.get("cert_name"), health.get("cert_not_after")
    if issued is not None and issued.not_after is not None:
        if name != issued.name or until != issued.not_after:
            out.append("cert_mismatch")
    if until is not None:
        if until <= now:
            out.append("cert_expired")
        elif until - now < CERT_EXPIRING:
            out.append("cert_expiring")
    return out


VILLAGE = (
    """
<p><a href="{{ url_for('dashboard.index') }}">{{ t('back') }}</a></p>
<h2>{{ v.gateway.village or v.gateway.id }} <span class="muted">({{ v.gateway.id }}{% if v.gateway.version %}, v{{ v.gateway.version }}{% endif %})</span></h2>
<p>{% if v.online %}<span class="on">{{ t('online') }}</span>{% else %}<span class="off">{{ t('offline') }}</span>{% endif %}
 · {{ t('last_seen') }}: {{ when(v.gateway.last_seen_at) }}
 {% for w in v.warnings %}<span class="warn">{{ t('w_' ~ w) }}</span>{% endfor %}</p>
<table>
<tr><th>{{ t('place') }}</th><td>{{ t('kabupaten') }}: {{ v.gateway.kabupaten or t('unplaced') }} · {{ t('kecamatan') }}: {{ v.gateway.kecamatan or t('unplaced') }}{% if v.gateway.latitude is not none %} · {{ '%.4f'|format(v.gateway.latitude) }}, {{ '%.4f'|format(v.gateway.longitude) }}{% endif %}</td></tr>
<tr><th>{{ t('software') }}</th><td>{{ software or '—' }}</td></tr>
<tr><th>{{ t('policy_version') }}</th><td>{{ v.gateway.policy_version or '—' }}</td></tr>
<tr><th>{{ t('certificate') }}</th><td>{% if certificate %}{{ certificate.name }}: {% if certificate.not_after %}{{ t('cert_until') }} {{ when(certificate.not_after) }}{% else %}{{ t('cert_none') }}{% endif %}{% if certificate.state != 'issued' %} <span class="warn">{{ certificate.state }}{% if certificate.error %}: {{ certificate.error }}{% endif %}</span>{% endif %}{% else %}<span class="muted">{{ t('cert_none') }}</span>{% endif %}</td></tr>
<tr><th>{{ t('cert_installed') }}</th><td>{% if installed.cert_name %}{{ installed.cert_name }}: {{ t('cert_until') }} {{ when(installed.cert_not_after) }}{% else %}<span class="muted">{{ t('cert_none') }}</span>{% endif %}{% for w in installed_warnings %} <span class="warn">{{ t(w) }}</span>{% endfor %}</td></tr>
<tr><th>{{ t('last_report') }}</th><td>{{ when(v.gateway.last_seen_at) }}</td></tr>
</table>
<h2>{{ t('alerts_village') }}</h2>
{% if village_alerts %}<table><tr><th>{{ t('since') }}</th><th>{{ t('kind') }}</th><th>{{ t('detail') }}</th><th>{{ t('cleared') }}</th></tr>
{% for a in village_alerts %}<tr><td>{{ when(a.raised_at) }}</td><td>{% if a.critical %}<span class="crit">{{ t('critical') }}</span> {% endif %}{{ t('a_' ~ a.kind.value) }}</td><td>{{ a.detail }}</td>
<td>{% if a.cleared_at %}{{ when(a.cleared_at) }}{% else %}<span class="off">{{ t('still_open') }}</span>{% endif %}</td></tr>{% endfor %}
</table>{% else %}<p class="muted">{{ t('no_alerts') }}</p>{% endif %}
<h2>{{ t('users_per_day') }}</h2>{{ users_chart }}
<h2>{{ t('traffic_per_day') }}</h2>{{ traffic_chart }}
<h2>{{ t('health') }}</h2>
{% if v.health %}<table>
<tr><th>{{ t('sampled_at') }}</th><td>{{ when(v.health.sampled_at) }}</td><th>{{ t('cpu') }}</th><td>{{ v.health.cpu_pct }} %</td><th>{{ t('load') }}</th><td>{{ v.health.load1 }} / {{ v.health.load5 }} / {{ v.health.load15 }}</td></tr>
<tr><th>{{ t('memory') }}</th><td>{{ v.health.mem_pct }} %</td><th>{{ t('disk') }}</th><td>{{ v.health.disk_pct }} % ({{ num(v.health.disk_free_mb) }} MB)</td><th>{{ t('temperature') }}</th><td>{% if v.health.temp_c is not none %}{{ v.health.temp_c }} °C{% else %}—{% endif %}</td></tr>
<tr><th>{{ t('uptime') }}</th><td>{{ uptime(v.health.uptime_s) }}</td><th>{{ t('uplink') }}</th><td>{% if v.health.uplink_ok %}{{ t('uplink_ok') }}{% if v.health.uplink_ms is not none %} ({{ v.health.uplink_ms }} ms){% endif %}{% elif v.health.uplink_ok is sameas false %}<span class="off">{{ t('uplink_down') }}</span>{% else %}—{% endif %}</td>
<th>{{ t('clients_online') }}</th><td>{{ num(v.health.clients_online) }}</td></tr>
<tr><th>{{ t('backlog') }}</th><td>{{ num(v.health.backlog) }}</td><th>{{ t('availability') }}</th><td>{% if v.uplink_availability is not none %}{{ '%.0f'|format(v.uplink_availability * 100) }} %{% else %}—{% endif %}</td>
<th>{{ t('clock') }}</th><td>{% if v.health.clock_synced %}{{ t('clock_ntp') }}{% elif v.health.clock_synced is sameas false %}<span class="off">{{ t('clock_' ~ (v.health.clock_source if v.health.clock_source in ('collector', 'none') else 'none')) }}</span>{% else %}—{% endif %}</td></tr>
</table>
<h2>{{ t('health_24h') }}</h2>{{ health_chart }}
{% else %}<p class="muted">{{ t('no_data') }}</p>{% endif %}
<h2>{{ t('outages') }}</h2>
{% if outages %}<table><tr><th>{{ t('started') }}</th><th>{{ t('ended') }}</th><th>{{ t('cause') }}</th></tr>
{% for x in outages %}<tr><td>{{ when(x.started_at) }}</td><td>{% if x.ended_at %}{{ when(x.ended_at) }}{% else %}<span class="off">{{ t('ongoing') }}</span>{% endif %}</td><td>{{ t('cause_' ~ x.cause) if x.cause in ('link', 'unreachable') else x.cause }}</td></tr>{% endfor %}
</table>{% else %}<p class="muted">{{ t('none') }}</p>{% endif %}
{% if v.devices_months %}<h2>{{ t('devices_per_month') }}</h2>
<table><tr><th>{{ t('month') }}</th><th class="n">{{ t('devices') }}</th></tr>
{% for m, n in v.devices_months %}<tr><td>{{ m }}</td><td class="n">{{ num(n) }}</td></tr>{% endfor %}
</table>{% endif %}
<h2>{{ t('sales_per_month') }}</h2>
{% if v.sales %}<table><tr><th>{{ t('month') }}</th><th>{{ t('package') }}</th><th class="n">{{ t('count') }}</th><th class="n">{{ t('rupiah') }}</th></tr>
{% for m, tot in v.sales_months %}{% for r in v.sales if r.month == m %}
<tr><td>{{ m }}</td><td>{{ r.package }}</td><td class="n">{{ num(r.count) }}</td><td class="n">{{ rp(r.rupiah) }}</td></tr>{% endfor %}
<tr><td></td><td><b>Σ</b></td><td class="n"><b>{{ num(tot[0]) }}</b></td><td class="n"><b>{{ rp(tot[1]) }}</b></td></tr>{% endfor %}
</table>{% else %}<p class="muted">{{ t('no_data') }}</p>{% endif %}
"""
    + """
<h2>{{ t('policy') }}</h2>
{% if policy %}<p>{{ t('kecamatan') }}: {{ v.gateway.kecamatan or '—' }} · {{ t('policy_published') }}: <b>{{ policy.version }}</b>
({{ when(policy.published_at) }}) · {{ t('policy_running') }}: <b>{{ v.gateway.policy_version or '—' }}</b>
{% if v.gateway.policy_version != policy.version %}<span class="warn">{{ t('policy_behind') }}</span>{% endif %}</p>
<table><tr><th>{{ t('policy_field') }}</th><th>{{ t('policy_value') }}</th><th>{{ t('policy_source') }}</th></tr>
{% for name, value in policy.policy.items() %}<tr><td>{{ name }}</td><td><code>{{ value | tojson }}</code></td><td>{{ policy.sources.get(name, '') }}</td></tr>{% endfor %}
</table>{% else %}<p class="muted">{{ t('no_data') }}</p>{% endif %}
"""
)


def _cfg() -> CollectorConfig:
    return current_app.config["COLLECTOR"]


def _lang() -> str:
    lang = request.args.get("lang") or request.cookies.get("lang") or _cfg().language
    return lang if lang in ("id", "en") else _cfg().language


def _num(lang: str):
    def num(n: Any) -> str:
        if n is None:
            return "—"
        s = f"{int(n):,}"
        return s.replace(",", ".") if lang == "id" else s

    return num


def _render_string(source: str, **ctx: Any) -> str:
    """``render_template_string`` without compiling the template again on every request
    (that was most of a page's time: bench.collector): each compiled once per app."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cache = app.extensions.setdefault("dashboard_templates", {})
    template = cache.get(source)
    if template is None:
        template = cache[source] = app.jinja_env.from_string(source)
    app.update_template_context(ctx)
    return template.render(ctx)


def _render(body_tpl: str, **ctx: Any) -> Response:
    cfg = _cfg()
    lang = _lang()
    num = _num(lang)
    tz = cfg.tz

    def t(key: str) -> str:
        return T[key][lang]

    def when(ts: dt.datetime | None) -> str:
        if ts is None:
            return t("never_seen")
        return local_time(ts, tz).strftime("%Y-%m-%d %H:%M")

    def uptime(seconds: int) -> str:
        d, rest = divmod(int(seconds), 86400)
        return f"{d} {t('days')} {rest // 3600} {t('hours')}"

    if cfg.region:
        heading = t("title_region").format(title=cfg.title, region=cfg.region)
    else:
        heading = t("title_plain").format(title=cfg.title)
    helpers = dict(
        heading=heading,
        t=t,
        when=when,
        num=num,
        uptime=uptime,
        hb=fmt_bytes,
        rp=lambda n: "Rp " + num(n),
        lang=lang,
        tz=cfg.timezone,
    )
    body = _render_string(body_tpl, **helpers, **ctx)
    resp = make_response(_render_string(PAGE, body=Markup(body), **helpers))
    if request.args.get("lang") in ("id", "en"):
        resp.set_cookie("lang", request.args["lang"], max_age=365 * 86400, samesite="Lax")
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.before_request
def _auth():
    if _cfg().dashboard_public:
        return None
    token = reply.bearer_token()
    auth = request.headers.get("Authorization", "")
    if not token and auth.lower().startswith("basic "):
        try:
            token = base64.b64decode(auth[6:]).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            token = ""
    with Session(current_app.extensions["collector_db"]) as s, s.begin():
        if check_token(s, token, utcnow()) is not None:
            return None
    resp = Response("sign in with an API token as the password\n", 401, mimetype="text/plain")
    resp.headers["WWW-Authenticate"] = 'Basic realm="Hotspot Desa", charset="UTF-8"'
    return resp


def _day_charts(series: queries.DaySeries, lang: str) -> tuple[Markup, Markup]:
    labels = [d.strftime("%d/%m") for d in series.days]
    users = svgchart.bars(
        labels, [(T["users_per_day"][lang], series.users)], title=T["users_per_day"][lang]
    )
    traffic = svgchart.bars(
        labels,
        [(T["download"][lang], series.down), (T["upload"][lang], series.up)],
        title=T["traffic_per_day"][lang],
        fmt=fmt_bytes,
    )
    return Markup(users), Markup(traffic)


def _place_filter(o: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The kabupaten and kecamatan to choose from, and the villages of the chosen ones only
    (``o["villages"]`` filtered in place, grouped by kabupaten then kecamatan)."""
    rows = o["villages"]
    chosen = {
        "kabupaten": request.args.get("kabupaten", "")[:100],
        "kecamatan": request.args.get("kecamatan", "")[:100],
    }
    kabupaten = sorted({r["kabupaten"] for r in rows if r["kabupaten"]})
    kecamatan = sorted(
        {
            r["kecamatan"]
            for r in rows
            if r["kecamatan"] and chosen["kabupaten"] in ("", r["kabupaten"])
        }
    )
    kept = [r for r in rows if all(not want or r[key] == want for key, want in chosen.items())]
    kept.sort(
        key=lambda r: (
            r["kabupaten"] is None,
            r["kabupaten"] or "",
            r["kecamatan"] is None,
            r["kecamatan"] or "",
            r["village"],
        )
    )
    o["villages"] = kept
    if len(kept) != len(rows):
        o["online"] = sum(1 for r in kept if r["online"])
        o["total"] = len(kept)
        o["warned"] = sum(1 for r in kept if r["warnings"])
        o["sales_month_rupiah"] = sum(r["sales_month_rupiah"] for r in kept)
    return {"kabupaten": kabupaten, "kecamatan": kecamatan}, chosen


# Villages on one page of the overview; more than that and no kabupaten chosen: the
# province's summary per kabupaten instead (bench.collector: 1,000 rows were most of a
# 1.6 s page). The villages needing attention and the open alerts: the first ATTENTION_ROWS.
ROWS_PER_PAGE = 100
ATTENTION_ROWS = 50


def _kabupaten_rows(villages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str | None, dict[str, Any]] = {}
    for r in villages:
        k = out.setdefault(
            r["kabupaten"],
            {"name": r["kabupaten"], "villages": 0, "online": 0, "warned": 0}
            | {"users_today": 0, "bytes_7d": 0, "sales": 0},
        )
        k["villages"] += 1
        k["online"] += r["online"]
        k["warned"] += bool(r["warnings"])
        k["users_today"] += r["users_today"]
        k["bytes_7d"] += r["bytes_7d"]
        k["sales"] += r["sales_month_rupiah"]
    return sorted(out.values(), key=lambda k: (k["name"] is None, k["name"] or ""))


def _page_number(pages: int) -> int:
    try:
        page = int(request.args.get("page", "1")[:9])
    except ValueError:
        page = 1
    return min(max(page, 1), max(pages, 1))


@bp.get("/")
def index():
    now = utcnow()
    with Session(current_app.extensions["collector_db"]) as s:
        o = queries.overview(s, _cfg(), now)
        places, chosen = _place_filter(o)
        if any(chosen.values()):
            shown = {r["id"] for r in o["villages"]}
            alerts = [a for a in open_alerts(s) if a.gateway_id in shown]
            alert_count = len(alerts)
        else:  # the whole province: the first rows shown and a count, not 1,000 objects
            alerts = open_alerts(s, limit=ATTENTION_ROWS)
            alert_count = count_open_alerts(s)
        names = {r["id"]: r["village"] for r in o["villages"]}
        # every gateway's policy versions: only where a policy exists at all
        has_policy = s.scalar(select(PolicyScope.scope).limit(1)) is not None
        policies = show_policies(s) if has_policy else {"scopes": [], "gateways": []}
    users, traffic = _day_charts(o["series"], _lang())
    # One url_for, not one per village (a quarter of the page's time with 1,000 villages);
    # gateway ids are [a-z0-9._-]: nothing to quote.
    base = url_for("dashboard.village", gateway_id="-")[:-1]
    villages = o["villages"]
    province = not any(chosen.values()) and len(villages) > ROWS_PER_PAGE
    if province:  # the villages whose policy is not applied yet, not a row per village
        policies["gateways"] = [
            g for g in policies["gateways"] if g["published"] and g["running"] != g["published"]
        ][:ATTENTION_ROWS]
    attention = [r for r in villages if r["warnings"] and not r["disabled"]]
    pages = -(-len(villages) // ROWS_PER_PAGE)
    page = _page_number(pages)
    o["villages"] = villages[(page - 1) * ROWS_PER_PAGE : page * ROWS_PER_PAGE]
    return _render(
        OVERVIEW,
        o=o,
        province=province,
        kabupaten_rows=_kabupaten_rows(villages) if province else [],
        attention=attention[:ATTENTION_ROWS],
        attention_more=max(0, len(attention) - ATTENTION_ROWS),
        page=page,
        pages=pages,
        args={k: v for k, v in request.args.items() if k in ("kabupaten", "kecamatan", "lang")},
        village_base=base,
        users_chart=users,
        traffic_chart=traffic,
        places=places,
        chosen=chosen,
        alerts=alerts[:ATTENTION_ROWS],
        alerts_more=max(0, alert_count - ATTENTION_ROWS),
        names=names,
        policies=policies,
    )


@bp.get("/map")
def village_map_page():
    now = utcnow()
    lang = _lang()
    with Session(current_app.extensions["collector_db"]) as s:
        o = queries.overview(s, _cfg(), now)
        places, chosen = _place_filter(o)
        alerting = {a.gateway_id for a in open_alerts(s)}
    points = []
    for r in o["villages"]:
        if r["latitude"] is None or r["longitude"] is None:
            continue
        status = (
            "disabled"
            if r["disabled"]
            else "offline"
            if not r["online"]
            else "alert"
            if r["id"] in alerting
            else "online"
        )
        place = " / ".join(x for x in (r["kabupaten"], r["kecamatan"]) if x)
        points.append(
            MapPoint(
                label=r["village"],
                latitude=r["latitude"],
                longitude=r["longitude"],
                status=status,
                href=url_for("dashboard.village", gateway_id=r["id"]),
                note=place,
            )
        )
    svg = village_map(
        points,
        title=T["map"][lang],
        legend={k: T["m_" + k][lang] for k in ("online", "alert", "offline", "disabled")},
    )
    return _render(
        MAP,
        map_svg=svg,
        unplaced=len(o["villages"]) - len(points),
        places=places,
        chosen=chosen,
    )


CHART_POINTS = 96  # the village page's 24-hour health chart: a point every 15 minutes


def _mean(samples: list[Any], field: str) -> float | None:
    values = [getattr(x, field) for x in samples if getattr(x, field) is not None]
    return round(sum(values) / len(values), 1) if values else None


@bp.get("/village/<gateway_id>")
def village(gateway_id: str):
    now = utcnow()
    with Session(current_app.extensions["collector_db"]) as s:
        v = queries.village(s, _cfg(), gateway_id, now)
        if v is None:
            abort(404)
        lang = _lang()
        users, traffic = _day_charts(v["series"], lang)
        tz = _cfg().tz
        samples = v["samples"]
        # a point per CHART_POINTS-th of the day, the mean of its samples: 288 five-minute
        # samples drew 1,152 points (bench.collector), a screen shows fewer anyway
        step = max(1, -(-len(samples) // CHART_POINTS))
        buckets = [samples[i : i + step] for i in range(0, len(samples), step)]
        labels = [local_time(b[0].sampled_at, tz).strftime("%H:%M") for b in buckets]
        health = (
            Markup(
                svgchart.lines(
                    labels,
                    [
                        ("CPU %", [_mean(b, "cpu_pct") for b in buckets]),
                        (T["temperature"][lang] + " °C", [_mean(b, "temp_c") for b in buckets]),
                        (T["disk"][lang] + " %", [_mean(b, "disk_pct") for b in buckets]),
                        (T["memory"][lang] + " %", [_mean(b, "mem_pct") for b in buckets]),
                    ],
                    title=T["health_24h"][lang],
                    top_value=100,
                )
            )
            if samples
            else Markup("")
        )
        h = v["health"] or {}
        gw: Gateway = v["gateway"]
        outages = list(
            s.scalars(
                select(UplinkOutage)
                .where(
                    UplinkOutage.gateway_id == gateway_id,
                    (UplinkOutage.ended_at.is_(None))
                    | (UplinkOutage.ended_at >= now - dt.timedelta(days=30)),
                )
                .order_by(UplinkOutage.started_at.desc())
                .limit(100)
            )
        )
        return _render(
            VILLAGE,
            v=v,
            users_chart=users,
            traffic_chart=traffic,
            health_chart=health,
            # what the gateway's newest health sample says it runs, else its description
            software=h.get("software_version") or gw.version,
            outages=outages,
            village_alerts=recent_alerts(s, gateway_id),
            policy=document_of(s, gateway_id),
            certificate=(cert := s.get(GatewayCertificate, gateway_id)),
            installed=h,
            installed_warnings=installed_warnings(h, cert, utcnow()),
        )
