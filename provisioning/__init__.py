"""Provisioning a village gateway from one file (``hotspot provision``, issue #6).

:mod:`provisioning.render` renders hostapd, dnsmasq, systemd-networkd, sysusers.d,
tmpfiles.d, sysctl.d and the systemd units from ``templates/``; :mod:`provisioning.validate`
checks them with the tools that read them; :mod:`provisioning.install` installs what differs
(atomically) and brings the services up. ``systemd/`` holds reference copies of the units.
See docs/provisioning.md.
"""
