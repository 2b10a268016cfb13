"""Issue 15, "One typo blocks everyone, forever", on the real broker and identity worker.

One sender's one-letter PID-5 typo blocks that sender's documents only; another sender
whose traits agree with the reference is delivered. `relais identity` (the real CLI, as
a subprocess) lists the held and blocked patients, reveals their traits (audited),
rejects, unblocks and releases; held documents expire into dead letters; the alert
rule fires on identity alerts (promtool).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from ops.demo.samples import DOMINIQUE, LAB, UNQUALIFIED, Patient, sample
from ops.localstack import Landing, LocalStack, read_landing
from producers.publisher import Publisher
from relais.contracts import Codec
from relais.envelope import Envelope, open_envelope

TYPO = replace(DOMINIQUE, family="PAT-TROYS")  # one letter off in PID-5
OPERATOR = "dr.vigilance"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


@pytest.fixture(scope="module")
async def gate(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("idops")), prefix=f"o{uuid.uuid4().hex[:8]}"
    ) as local:
        yield local


def lab(patient: Patient, n: int, facility: str) -> bytes:
    return sample(LAB, patient, n).replace(b"|RELAIS-DEMO|", f"|{facility}|".encode(), 1)


async def submit(stack: LocalStack, *messages: bytes) -> list[str]:
    s = stack.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        return [(await publisher.submit_lab_result(m))[0] for m in messages]


async def landing_until(stack: LocalStack, check: Any, timeout_s: float = 60) -> Landing:
    s = stack.settings
    return await read_landing(s.kafka.bootstrap, s.kafka.prefix, until=check, timeout_s=timeout_s)


async def relais(
    stack: LocalStack, *args: str, operator: str | None = OPERATOR
) -> subprocess.CompletedProcess[str]:
    """The real `relais identity ...` command, with the stack's settings."""
    env = stack.environment(0)
    if operator:
        env["RELAIS_OPERATOR"] = operator
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ops", "identity", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@dataclass(frozen=True)
class Typo:
    """The block the module's tests share: B's documents, A's typo and A's next one."""

    b_first: str
    typo: str
    a_after: str
    b_after: str


@pytest.fixture(scope="module")
async def typo(gate: LocalStack) -> Typo:
    [b_first] = await submit(gate, lab(DOMINIQUE, 31, "LABO-B"))
    await landing_until(gate, lambda lan: b_first in lan.delivered)  # the reference identity
    ids = await submit(gate, lab(TYPO, 32, "LABO-A"), lab(DOMINIQUE, 33, "LABO-A"))
    [b_after] = await submit(gate, lab(DOMINIQUE, 34, "LABO-B"))
    return Typo(b_first, ids[0], ids[1], b_after)


async def test_one_typo_blocks_only_its_sender_and_another_sender_is_delivered(
    gate: LocalStack, typo: Typo
) -> None:
    landing = await landing_until(
        gate,
        lambda lan: typo.b_after in lan.delivered and {typo.typo, typo.a_after} <= set(lan.held),
    )
    assert landing.delivered[typo.b_after]["outcome"] == "DELIVERED"
    assert landing.held[typo.typo]["reason_code"] == "same-ins-different-traits"
    assert landing.held[typo.a_after]["reason_code"] == "behind-held-documents"
    assert typo.a_after not in landing.delivered


async def _patient(gate: LocalStack) -> dict[str, Any]:
    listed = await relais(gate, "list", "--json", operator=None)
    assert listed.returncode == 0, listed.stderr
    [patient] = json.loads(listed.stdout)
    return patient  # type: ignore[no-any-return]


async def test_one_typo_list_reveal_reject_and_unblock_through_the_cli(
    gate: LocalStack, typo: Typo
) -> None:
    await landing_until(gate, lambda lan: {typo.typo, typo.a_after} <= set(lan.held))
    patient = await _patient(gate)
    key = patient["patient_key"]
    assert patient["blocked"] == "same-ins-different-traits"
    assert patient["blocked_senders"] == ["LABO-A"]
    assert [d["event_id"] for d in patient["documents"]] == [typo.typo, typo.a_after]
    shown = await relais(gate, "list", operator=None)
    assert key[:16] in shown.stdout
    assert "BLOCKED same-ins-different-traits" in shown.stdout
    assert "PAT-TRO" not in shown.stdout  # pseudonymised: no traits without --reveal

    refused = await relais(gate, "list", "--reveal", operator=None)
    assert refused.returncode == 1
    assert "RELAIS_OPERATOR" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    revealed = await relais(gate, "list", "--reveal", "--json")
    assert revealed.returncode == 0, revealed.stderr
    documents = json.loads(revealed.stdout)[0]["documents"]
    assert documents[0]["traits"]["birth_name"] == "PAT-TROYS"
    assert documents[1]["traits"]["birth_name"] == "PAT-TROIS"

    rejected = await relais(gate, "reject", key[:12], "-e", typo.typo, "--comment", "typo")
    assert rejected.returncode == 0, rejected.stderr
    assert f"{typo.typo}  done" in rejected.stdout
    unblocked = await relais(gate, "unblock", key[:12])
    assert unblocked.returncode == 0, unblocked.stderr
    assert "now not blocked" in unblocked.stdout

    # the rejected document, corrected and sent again, is no duplicate of the rejected one
    [corrected] = await submit(gate, lab(DOMINIQUE, 32, "LABO-A"))
    landing = await landing_until(gate, lambda lan: {typo.a_after, corrected} <= set(lan.delivered))
    [letter] = [d for d in landing.dead if d["event_id"] == typo.typo]
    assert (letter["stage"], letter["reason_code"]) == ("identity", "identity-rejected")
    assert letter["source_topic"] == f"{gate.settings.kafka.prefix}.documents.submitted.v1"
    outcomes = {a["outcome"]: a for a in landing.audits if a["component"].startswith("identity")}
    for outcome in (
        "identity-operation:revealed",
        "identity-operation:rejected",
        "identity-operation:unblocked:same-ins-different-traits",
    ):
        assert f"operator {OPERATOR}" in outcomes[outcome]["detail"], outcome


async def test_one_typo_release_by_an_operator_delivers_the_held_document(
    gate: LocalStack, typo: Typo
) -> None:
    await landing_until(gate, lambda lan: typo.a_after in lan.delivered)  # after the unblock
    [again] = await submit(gate, lab(TYPO, 35, "LABO-C"))
    await landing_until(gate, lambda lan: again in lan.held)
    key = (await _patient(gate))["patient_key"]
    nobody = await relais(gate, "release", key, operator=None)
    assert nobody.returncode == 1
    assert "RELAIS_OPERATOR" in nobody.stderr
    released = await relais(gate, "release", key, "--operator", "dr.other")
    assert released.returncode == 0, released.stderr
    landing = await landing_until(gate, lambda lan: again in lan.delivered)
    assert landing.delivered[again]["outcome"] == "DELIVERED"
    [audit] = [
        a
        for a in landing.audits
        if a["event_id"] == again and a["outcome"] == "identity-operation:released-by-operator"
    ]
    assert "operator dr.other" in audit["detail"]


async def test_one_typo_held_documents_expire_into_dead_letters(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("idexp")),
        prefix=f"x{uuid.uuid4().hex[:8]}",
        workers=(("worker", "identity"),),
        extra_environment={"RELAIS_IDENTITY_HOLD_EXPIRY_S": "3"},
    ) as stack:
        [held] = await submit(stack, lab(UNQUALIFIED, 36, "LABO-A"))
        landing = await landing_until(
            stack, lambda lan: any(d["event_id"] == held for d in lan.dead), timeout_s=40
        )
    assert landing.held[held]["reason_code"] == "identity-not-qualified"
    [letter] = [d for d in landing.dead if d["event_id"] == held]
    assert (letter["stage"], letter["reason_code"]) == ("identity", "identity-expired")
    assert letter["source_topic"] == f"{stack.prefix}.documents.submitted.v1"
    original = open_envelope(
        stack.keyring,
        Envelope.from_record(letter["original"]),
        event_id=letter["dead_letter_id"],
        purpose="original",
    )
    name, record = Codec().decode(original)
    assert (name, record["event_id"]) == ("DocumentSubmitted", held)


def test_the_alert_rule_fires_on_identity_alerts(tmp_path: Path) -> None:
    tests = tmp_path / "identity-alert-tests.yml"
    series = 'relais_identity_alerts_total{job="relais",instance="identity:9108",reason="%s"}'
    tests.write_text(
        json.dumps(
            {
                "rule_files": [str(RULES)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            # the first alert of its kind: the series appears at 1
                            {"series": series % "same-ins-different-traits", "values": "_x4 1x60"},
                            # a series counted since the start that grows again at 40 min
                            {"series": series % "insi-disagrees", "values": "1x40 2x20"},
                        ],
                        "alert_rule_test": [
                            _fires(6, "insi-disagrees", "same-ins-different-traits"),
                            {
                                "eval_time": "25m",
                                "alertname": "RelaisIdentityAlert",
                                "exp_alerts": [],
                            },
                            _fires(45, "insi-disagrees"),
                        ],
                    }
                ],
            }
        )
    )
    proc = subprocess.run(
        ["promtool", "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _fires(minute: int, *reasons: str) -> dict[str, Any]:
    return {
        "eval_time": f"{minute}m",
        "alertname": "RelaisIdentityAlert",
        "exp_alerts": [_alert(reason) for reason in reasons],
    }


def _alert(reason: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "critical", "reason": reason},
        "exp_annotations": {
            "summary": f"Identitovigilance alert: {reason}",
            "description": (
                "The identity stage found a contradiction about a patient identity "
                f"({reason}) and holds the contradicting documents until a human "
                "decides. Run `relais identity list --blocked`, then "
                "`relais identity release|reject|unblock`."
            ),
        },
    }
