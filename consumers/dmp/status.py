"""The TD0.2 gate before a patient's filings: what its answer means, and how long it holds.

Before filing a document the sink asks the DMP, once per patient and then every
RELAIS_DMP_STATUS_CACHE_S (one day by default), whether the patient's DMP exists, is open and
may be fed by this structure (:mod:`consumers.dmp.td02`). An open DMP is remembered
(:class:`StatusCache`) so that a lab's burst of results for one patient costs one TD0.2;
a refusal is never remembered, so a replay after the situation changed asks again (and a
replayed request always asks). What an answer becomes (:func:`verdict`): nothing (file it),
:class:`DmpRejected` with the DMP's code (no DMP, closed, objection, no right: the request
is REJECTED, dead-lettered, and the producer's ZAM^Z01 N carries the code), or
:class:`DmpUnavailable` when :mod:`consumers.dmp.error_codes` says the code is worth retrying.
Pure and synchronous: the sink passes the time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime, timedelta

from consumers.dmp.error_codes import Decision, decide
from consumers.dmp.submission import DmpRejected, DmpUnavailable


def verdict(code: str | None) -> None:
    """Nothing when the DMP may be fed (``code`` None); else the error the code is worth."""
    if code is None:
        return
    row = decide(code)
    message = f"TD0.2: {row.operator}"
    if row.decision is Decision.RETRY:
        raise DmpUnavailable(message, code=code)
    raise DmpRejected(message, code=code)


class StatusCache:
    """The patients whose DMP was open at a TD0.2 less than ``lifetime`` ago (``size`` kept)."""

    def __init__(self, lifetime: timedelta, *, size: int = 65536) -> None:
        if lifetime < timedelta(0):
            raise ValueError("a TD0.2 answer is kept for a duration >= 0")
        self.lifetime, self.size = lifetime, size
        self._open: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()
        self.asked = 0  # TD0.2 calls made (the rest were answered here)

    def fresh(self, patient_id: str, now: datetime) -> bool:
        """Whether ``patient_id``'s DMP was found open less than ``lifetime`` before ``now``."""
        with self._lock:
            at = self._open.get(patient_id)
            if at is None or not at <= now < at + self.lifetime:
                return False
            self._open.move_to_end(patient_id)
            return True

    def answered(self, patient_id: str, code: str | None, now: datetime) -> None:
        """Record a TD0.2 answer: an open DMP is remembered, anything else forgotten."""
        with self._lock:
            self.asked += 1
            if code is not None:
                self._open.pop(patient_id, None)
                return
            self._open[patient_id] = now
            self._open.move_to_end(patient_id)
            while len(self._open) > self.size:
                self._open.popitem(last=False)
