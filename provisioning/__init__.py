"""Rendering and installing hostapd, dnsmasq, systemd-networkd and our own configuration
(see issue #6; the systemd units live in ``systemd/``)."""
