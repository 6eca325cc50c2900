"""``hotspot portal …``: serve the captive portal, and say where it is."""

from __future__ import annotations

import argparse
from typing import Any

from hotspot import config as config_mod
from hotspot.commandline import print_result
from hotspot.logsetup import LEVELS, setup_logging


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    po = sub.add_parser("portal", help="the captive portal (unprivileged web app)")
    pos = po.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    prun = pos.add_parser("run", help="serve the portal with gunicorn (drops to portal.user)")
    prun.add_argument(
        "--bind",
        metavar="HOST:PORT",
        help="listen here (default: the LAN address and network.portal_port)",
    )
    prun.add_argument(
        "--workers",
        type=int,
        choices=range(1, 17),
        metavar="N",
        help="worker processes (default: portal.workers, else from the cores)",
    )
    prun.add_argument(
        "--tls",
        action="store_true",
        help="the HTTPS listener for portal.hostname on portal.https_port",
    )
    prun.add_argument("--log-level", default="INFO", choices=LEVELS)
    prun.set_defaults(handler=_run)
    purls = pos.add_parser("urls", help="where the portal is; what DHCP option 114 announces")
    purls.add_argument("--json", action="store_true")
    purls.set_defaults(handler=_urls)


def _urls(args: argparse.Namespace) -> int:
    from portal.urls import PortalUrls

    urls = PortalUrls.from_config(config_mod.load(args.config))
    data = {
        "captive_redirect": urls.captive_base + "/",
        "user_portal_url": urls.user_portal_url,
        "captive_api_url": urls.api_url,
        "venue_info_url": urls.venue_info_url,
        "dnsmasq": f'dhcp-option=114,"{urls.api_url}"',
    }
    print_result(data, args.json, lambda d: "\n".join(f"{k:17} {v}" for k, v in d.items()))
    return 0


def _run(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    setup_logging(args.log_level)
    from portal.server import run as run_portal

    return run_portal(
        cfg, tls=args.tls, bind=args.bind, workers=args.workers, log_level=args.log_level
    )
