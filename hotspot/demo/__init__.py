"""``hotspot demo``: a simulated village in network namespaces running the real gateway,
dnsmasq, portal, sync agent and collector, with scripted villagers (see docs/demo.md).

Root only. ``village`` orchestrates; ``villagers`` runs inside the phones' namespaces;
``forward`` brings the portal and the collector to ports on the host's loopback;
``display`` draws the live summary.
"""

from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    from hotspot.demo.village import Options, run

    return run(Options(duration=args.duration, phones=args.phones, prefix=args.prefix,
                       keep_artifacts=args.keep_artifacts,
                       live=False if args.plain else None))
