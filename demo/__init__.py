"""``hotspot demo``: a simulated village in network namespaces running the real gateway,
dnsmasq, portal, sync agent and collector, with scripted villagers (see docs/demo.md).

Root only. ``village`` orchestrates; ``villagers`` runs inside the phones' namespaces;
``forward`` brings the portal and the collector to ports on the host's loopback;
``display`` draws the live summary; ``cli`` registers the command.
"""
