"""The province's policy on the gateway: verified here, on the privileged side, and nowhere
else (hotspot/policy.py has the rules).

The sync agent (unprivileged, and not in the control socket's group) fetches the signed
envelope from the collector and leaves it in the state folder (``policy-inbox.json``), which
the daemon takes on its next tick (:meth:`PolicyKeeper.check_inbox`); anyone in the
``hotspot`` group may also hand one over the control socket (``policy-apply``). Neither is
trusted: nothing is believed before the signature of the pinned key is checked. Then, in
this order:

1. verify: the pinned key's signature, this gateway's id, a version above the one in force,
   valid content, and the local configuration overlaid with it still valid;
2. keep: the envelope is written as the last good policy (fsync + rename): from here on a
   restart runs it, with the uplink down too;
3. apply: the walled-garden set in one nftables transaction, then the engine's new
   configuration (the free tier's rates for running sessions on them, quotas, schedule).

A refused policy is logged with its error code and changes nothing; the last good one stays.
At start-up the last good file is verified again (a file changed on the disk is not run) and
the daemon starts with its effective configuration.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from hotspot import policy as policy_mod
from hotspot.config import Config
from hotspot.errors import ErrorCode
from hotspot.policy import Policy, PolicyRefused
from hotspot.timeutil import iso, utcnow

log = logging.getLogger(__name__)

Applier = Callable[[Config, Config], None]  # (old, new) effective configurations


class PolicyKeeper:
    def __init__(self, local: Config, clock: Callable[[], dt.datetime] = utcnow):
        self.local = local
        self.clock = clock
        self.policy: Policy | None = None
        self.effective = local
        self.applied_at: dt.datetime | None = None
        self.last_refusal: dict[str, str] | None = None
        self.lock = threading.Lock()
        self.apply: Applier | None = None  # set by the daemon once its data path runs

    @property
    def version(self) -> int:
        return self.policy.version if self.policy is not None else 0

    def load(self) -> Config:
        """The effective configuration at start-up: the last good policy, verified again, over
        the local file; the local file alone when there is none (or it does not verify)."""
        cfg = self.local.policy
        if not cfg.public_key:
            return self.local
        try:
            envelope = policy_mod.load_stored(cfg.state_file)
            if envelope is None:
                log.info("no policy from the province yet: the local configuration rules")
                return self.local
            policy = policy_mod.verify(
                envelope, cfg.public_key, self.local.sync.gateway_id, apart=True
            )
            effective = policy_mod.effective_config(self.local, policy)
        except PolicyRefused as exc:
            # The file was changed on the disk, or the pinned key changed: not run.
            self._note_refusal(exc, f"the kept policy {cfg.state_file}")
            return self.local
        self.policy, self.effective, self.applied_at = policy, effective, self.clock()
        log.info("policy version %d in force (kept in %s)", policy.version, cfg.state_file)
        return effective

    def offer(self, envelope: Mapping[str, Any]) -> dict[str, Any]:
        """Verify, keep and apply an envelope; the summary of the policy in force. Raises
        :class:`PolicyRefused` (logged, nothing changed) when it is not taken."""
        cfg = self.local.policy
        with self.lock:
            try:
                if not cfg.public_key:
                    raise PolicyRefused(
                        "no policy key pinned ([policy] public_key): policies are not taken",
                        ErrorCode.POLICY_SIGNATURE,
                    )
                policy = policy_mod.verify(
                    envelope,
                    cfg.public_key,
                    self.local.sync.gateway_id,
                    current=self.version,
                    apart=True,  # the daemon never loads cryptography (8 MB)
                )
                effective = policy_mod.effective_config(self.local, policy)
            except PolicyRefused as exc:
                self._note_refusal(exc, "a policy from the collector")
                raise
            # Kept before it is applied: a power cut in between runs it at the next start.
            policy_mod.store(cfg.state_file, policy.envelope)
            old = self.effective
            self.policy, self.effective, self.applied_at = policy, effective, self.clock()
            self.last_refusal = None
            log.info(
                "policy version %d taken (fields: %s)",
                policy.version,
                ", ".join(sorted(policy.fields)) or "none",
            )
            if self.apply is not None:
                self.apply(old, effective)
            return self.status()

    def check_inbox(self) -> bool:
        """Take the envelope the sync agent left in the state folder, if any (each tick of the
        daemon: one stat of a file that is usually not there). True when one was taken."""
        if not self.local.policy.public_key:
            return False
        try:
            envelope = policy_mod.read_inbox(self.local.policy.state_file)
        except PolicyRefused as exc:
            self._note_refusal(exc, "a policy from the sync agent")
            return False
        except OSError as exc:
            log.warning("policy inbox: %s", exc)
            return False
        if envelope is None:
            return False
        try:
            self.offer(envelope)
        except PolicyRefused:
            return False  # logged by offer; the last good one stays
        return True

    def _note_refusal(self, exc: PolicyRefused, what: str) -> None:
        log.warning("%s refused (%s): %s", what, exc.code, exc.message)
        self.last_refusal = {"code": str(exc.code), "message": exc.message, "at": iso(self.clock())}

    def status(self) -> dict[str, Any]:
        """The policy in force (None when none), where it is kept, the last refusal."""
        return {
            "pinned": bool(self.local.policy.public_key),
            "key_id": policy_mod.key_id(self.local.policy.public_key)
            if self.local.policy.public_key
            else "",
            "state_file": self.local.policy.state_file,
            "in_force": self.policy.summary() if self.policy is not None else None,
            "applied_at": iso(self.applied_at) if self.applied_at else None,
            "last_refusal": self.last_refusal,
            "announcements": self.policy.announcements(self.clock()) if self.policy else [],
        }
