"""The policy's signature checked in a child interpreter (``verify(..., apart=True)``, what the
gateway daemon does: issue #12 item 3, cryptography's 8 MB stay out of the daemon). The same
answers as in-process for a good, a tampered and a foreign envelope; and a check that cannot
be made (the child fails, is killed, says something else) refuses the policy: fails closed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hotspot import policy
from hotspot.errors import ErrorCode
from tests.unit.hotspot.test_policy import GW, PUB, envelope, refused

REPO = Path(__file__).resolve().parents[3]


def test_a_good_envelope_verifies_apart_as_it_does_in_process():
    env = envelope(5)
    apart = policy.verify(env, PUB, GW, apart=True)
    assert apart == policy.verify(env, PUB, GW)
    assert apart.version == 5


def test_a_tampered_or_foreign_envelope_is_refused_apart():
    env = envelope(2)
    tampered = {**env, "document": env["document"].replace("768", "9999")}
    says = refused(ErrorCode.POLICY_SIGNATURE, policy.verify, tampered, PUB, GW, apart=True)
    assert "bad signature" in says
    foreign = envelope(2, key=policy.new_private_key())
    refused(ErrorCode.POLICY_SIGNATURE, policy.verify, foreign, PUB, GW, apart=True)


@pytest.mark.parametrize(
    "child",
    [
        "import sys; sys.exit(1)",  # crashed (cryptography missing, out of memory…)
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",  # killed mid-way
        "print('good enough')",  # an answer that is not one
    ],
)
def test_a_check_that_cannot_be_made_refuses_the_policy(monkeypatch, child):
    monkeypatch.setattr(policy, "_CHECK_APART", child)
    says = refused(ErrorCode.POLICY_SIGNATURE, policy.verify, envelope(3), PUB, GW, apart=True)
    assert "not checked" in says


def test_the_process_that_verifies_apart_has_not_loaded_cryptography():
    # The envelope is signed here (signing needs cryptography) and handed over on stdin.
    code = (
        "import json, sys\n"
        "from hotspot import policy\n"
        "env, pub, gw = json.load(sys.stdin)\n"
        "p = policy.verify(env, pub, gw, apart=True)\n"
        "print(json.dumps([p.version, any(m.split('.')[0] == 'cryptography' for m in sys.modules)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        input=json.dumps([envelope(7), PUB, GW]),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [7, False]
