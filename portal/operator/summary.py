"""The daily summary to the BUMDes head (*Ringkasan harian*, issue #13 item 7): whether it is
on, to which chat, at what time, today's message as it would go out, and the latest
summaries sent, waiting or refused with Telegram's reason. Read only — the settings live in
the configuration file's ``[summary]`` and the summary service sends — and admin only: a
kasir gets the 403 page. The bot token is never shown, only its bot number and last four
characters."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from hotspot import summary as summary_mod
from portal.operator.blueprint import admin_only, bp, cfg
from portal.operator.pages import page
from portal.state import state

log = logging.getLogger(__name__)


@bp.get("/summary")
@admin_only
def summary() -> Any:
    config = cfg()
    st = state()
    now = st.clock()
    day = summary_mod.today(config, now)
    try:
        preview = summary_mod.compose(summary_mod.gather(st.db, config, day, now))
    except SQLAlchemyError:  # a busy database: the page shows without the preview
        log.warning("summary preview unavailable", exc_info=True)
        preview = ""
    rows = summary_mod.queue(st.db, limit=10)
    return page(
        "summary.html",
        settings=summary_mod.settings(config.summary),
        rows=rows,
        preview=preview,
        zone=summary_mod.zone_name(config, day),  # WIB, WITA, WIT
        refused=sum(1 for r in rows if r["state"] == "failed"),
    )
