"""The entryUUIDs the DMP assigned: learnt after filing, kept in the ledger, else asked.

The DMP, not Relais, gives each document entry its entryUUID, a new one per version
(PDSM4DMP-EEDS transaction_td2.1.md: a replacement's RPLC association names the
entryUUID of the version it replaces, obtained by the search transaction). So after each
successful ITI-41 the sink asks the registry which entryUUID it gave the document (ITI-18
GetDocuments by uniqueId) and keeps it in the delivery ledger, beside the request's entry:
``<document id>|entryUUID``, whose ``code`` is the entryUUID (the ledger is partitioned by
patient like the requests, so a patient's later replacement, deletion or visibility update
finds it in the same partition). When the ledger has none — a document filed before this
version, or the lookup after filing failed — :meth:`EntryUuids.of` asks the registry then.
"""

from __future__ import annotations

import logging
from datetime import datetime

from consumers.dmp.client import DmpClient
from consumers.dmp.request import xds_ids
from consumers.dmp.submission import DmpError
from consumers.ihe.vihf import Subject
from relais.delivery_ledger import DELIVERED, Entry, LedgerStore, done

log = logging.getLogger(__name__)


def entry_key(unique_id: str) -> str:
    """The ledger key of the entryUUID the DMP gave the document ``unique_id``."""
    return f"{unique_id}|entryUUID"


def learnt(unique_id: str, entry_uuid: str, *, now: datetime) -> Entry:
    """The ledger entry keeping ``entry_uuid`` for ``unique_id``."""
    return done(entry_key(unique_id), DELIVERED, entry_uuid, 1, now=now)


def kept(entry: Entry | None) -> str | None:
    """The entryUUID a ledger entry keeps (None: none kept)."""
    return entry.code if entry is not None and entry.code else None


class EntryUuids:
    """The entryUUIDs of a sink's documents: its ledger first, the DMP's registry then."""

    def __init__(self, ledger: LedgerStore, client: DmpClient) -> None:
        self.ledger, self.client = ledger, client

    async def of(
        self, partition: int, unique_id: str, patient_id: str, subject: Subject | None = None
    ) -> str | None:
        """The entryUUID of ``unique_id`` in the DMP (None: the DMP holds no such document)."""
        known = kept(self.ledger.get(partition, entry_key(unique_id)))
        if known is not None:
            return known
        found = await self.client.find(xds_ids(unique_id), patient_id, subject)
        return found[0] if found else None

    async def learn(
        self,
        partition: int,
        unique_id: str,
        xds_id: str,
        patient_id: str,
        *,
        now: datetime,
        subject: Subject | None = None,
    ) -> str | None:
        """Ask the registry for the entryUUID of the document just filed and keep it; a failed
        lookup is not an error (it is asked again when needed)."""
        try:
            found = await self.client.find((xds_id,), patient_id, subject)
        except DmpError as exc:
            log.warning("dmp-sink: entryUUID not learnt now (%s): asked when needed", exc.code)
            return None
        if not found:
            return None
        await self.ledger.write(partition, learnt(unique_id, found[0], now=now))
        return found[0]
