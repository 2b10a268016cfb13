"""Signed VIHFs reused for one patient while they are valid.

A VIHF names the patient (``resource-id``) and the author context (the structure, the acting
professional — the document's author, or the structure's responsible person — and Relais):
the structure and Relais are fixed for one sink, so the assertion signed for a patient and a
subject may authenticate the next request for the same patient *by the same subject* until its
``NotOnOrAfter`` (:data:`consumers.ihe.vihf.LIFETIME`, 5 minutes). A copy is reused for
:data:`REUSE` (4 minutes: a minute is left for clocks and transit); a patient's burst of
documents (a lab's results, a stay's letters) costs one RSA signature. Thread-safe: the
DMP client signs in worker threads.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Final

from lxml import etree

from consumers.ihe.vihf import LIFETIME, SigningKey, Subject, VihfIdentity, signed_vihf

REUSE: Final = LIFETIME - timedelta(minutes=1)


class VihfCache:
    """The latest signed VIHF of each of the ``size`` most recent (patient, subject) pairs."""

    def __init__(
        self, identity: VihfIdentity, key: SigningKey, *, reuse: timedelta = REUSE, size: int = 4096
    ) -> None:
        if not timedelta(0) <= reuse < LIFETIME:
            raise ValueError(f"a VIHF is reused for less than its lifetime ({LIFETIME})")
        self.identity, self.key, self.reuse, self.size = identity, key, reuse, size
        self._signed: OrderedDict[tuple[str, Subject], tuple[datetime, etree._Element]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self.signatures = 0  # how many were signed (the rest were reused)

    def signed(
        self, patient_id: str, now: datetime, subject: Subject | None = None
    ) -> etree._Element:
        """A VIHF for ``patient_id`` by ``subject`` (None: the identity's own subject) valid at
        ``now``: a copy of a recent one, or a new one.

        Always a copy: the caller inserts it into its SOAP header (lxml moves elements)."""
        identity = self.identity.acting_as(subject)
        key = (patient_id, identity.subject)
        with self._lock:
            found = self._signed.get(key)
            if found is not None and found[0] <= now < found[0] + self.reuse:
                self._signed.move_to_end(key)
                return copy.deepcopy(found[1])
        vihf = signed_vihf(identity, patient_id, self.key, now=now)
        with self._lock:
            self.signatures += 1
            self._signed[key] = (now, vihf)
            self._signed.move_to_end(key)
            while len(self._signed) > self.size:
                self._signed.popitem(last=False)
        return copy.deepcopy(vihf)
