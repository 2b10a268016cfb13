"""The bus side of ``relais trace``: read what every component said, keep one document's."""

from __future__ import annotations

from ops.dlq.letters import LetterView
from ops.dlq.shell import decoded, letter_view
from ops.trace.journey import Journey, journey
from relais.contracts import Codec
from relais.kafka_clients import Target
from relais.keyring import Keyring
from relais.topic_reader import partitions_of, read_to_end
from relais.topics import AUDIT, BUSINESS_ACKS, DEADLETTER, DELIVERY_STATUS

TRACE_TOPICS = (AUDIT, DELIVERY_STATUS, DEADLETTER, BUSINESS_ACKS)


async def read_journey(
    bootstrap: Target, prefix: str, document: str, *, keyring: Keyring | None
) -> Journey:
    """``document``'s journey from the audit, status, dead-letter and ack topics as they are now.

    With a keyring, dead letters that do not name their event (the identity stage's)
    are linked to it through their sealed original.
    """
    codec = Codec()
    messages = await read_to_end(bootstrap, await partitions_of(bootstrap, TRACE_TOPICS, prefix))
    by_type: dict[str, list[dict[str, object]]] = {}
    letters: list[LetterView] = []
    for name, record, m in decoded(codec, messages):
        if name == "DeadLetter":
            letters.append(letter_view(codec, keyring, record, m.key))
        else:
            by_type.setdefault(name, []).append(record)
    return journey(
        document,
        audits=by_type.get("AuditEvent", []),
        statuses=by_type.get("DeliveryStatus", []),
        letters=letters,
        acks=by_type.get("BusinessAck", []),
    )
