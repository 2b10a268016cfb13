"""The entryUUIDs the DMP assigned: always the current version's, asked when needed.

The DMP, not Relais, gives each document entry its entryUUID, a new one per version
(PDSM4DMP-EEDS transaction_td2.1.md: a replacement's RPLC association names the
entryUUID of the version it replaces, obtained by the search transaction). A version
changes without Relais filing anything: TD3.3b (the embargo lift, ITI-57) makes a new
version with a new entryUUID and deprecates the old one, and so may another software or
the patient; the DMP refuses a replacement of a deprecated version. So
:meth:`EntryUuids.of` asks the registry each time for the current (Approved) version
(ITI-18 GetDocuments, LeafClass); Relais keeps no entryUUID, which could only go stale.
"""

from __future__ import annotations

from consumers.dmp.client import DmpClient
from consumers.dmp.request import xds_ids
from consumers.ihe.vihf import Subject


class EntryUuids:
    """The entryUUIDs of a sink's documents, from the DMP's registry."""

    def __init__(self, client: DmpClient) -> None:
        self.client = client

    async def of(
        self, unique_id: str, patient_id: str, subject: Subject | None = None
    ) -> str | None:
        """The entryUUID of the current version of ``unique_id`` in the DMP (None: the DMP
        holds no approved version)."""
        found = await self.client.find(xds_ids(unique_id), patient_id, subject)
        return found[0] if found else None
