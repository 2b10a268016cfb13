"""Versions of the CDAs Relais builds: id, setId, versionNumber and the replaced id (pure).

A document Relais wraps or builds (a PDF as N1, lab results as CR-BIO N3)
gets its CDA id from Relais, so Relais also keeps its life cycle: a
correction (ORU OBX-11 ``C`` / ORC ``RO``, MDM^T10) is a new CDA with a new
id, the same ``setId``, ``versionNumber`` + 1 and a ``relatedDocument RPLC``
to the version it replaces — the latest one, not the first.

The state lives in the transcode stage's table (one per partition, keyed by
the patient's record key, so a patient's documents see one consistent view):

* ``set:<setId>``  -> JSON list of ``[cda id, event id]``, oldest first;
* ``id:<cda id>``  -> the ``setId`` that CDA belongs to.

Assigning is idempotent per event: a record processed again after a crash
(at-least-once) gets the version it got the first time, so a retry never
builds a third version of a document that has two.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Final

_IDS: Final = uuid.UUID("0d5c8f1e-3a7b-4c2e-9f61-8b4a2d7e5c30")

State = MutableMapping[str, str]


class SeriesError(ValueError):
    """A life-cycle step that cannot be applied (e.g. a correction of an unknown document)."""


def cda_id_for(unique_id: str) -> str:
    """The CDA id Relais gives the producer's document ``unique_id``: ``2.25.<UUID>``.

    2.25 is the ISO/ITU arc of UUID-based OIDs; the UUID is derived from the id,
    so the same producer document always gets the same CDA id.
    """
    return f"2.25.{uuid.uuid5(_IDS, unique_id).int}"


@dataclass(frozen=True)
class Version:
    """The identity of one CDA within its series."""

    cda_id: str
    set_id: str
    number: int  # versionNumber, 1 for the first
    replaces: str | None  # CDA id of the version it replaces (RPLC), None for the first


def _versions(state: State, set_id: str) -> list[list[str]]:
    raw = state.get(f"set:{set_id}")
    return json.loads(raw) if raw else []


def _record(state: State, set_id: str, versions: list[list[str]]) -> None:
    state[f"set:{set_id}"] = json.dumps(versions)
    for cda_id, _ in versions:
        state[f"id:{cda_id}"] = set_id


def _existing(versions: list[list[str]], set_id: str, event_id: str) -> Version | None:
    for index, (cda_id, seen) in enumerate(versions):
        if seen == event_id:
            replaces = versions[index - 1][0] if index else None
            return Version(cda_id, set_id, index + 1, replaces)
    return None


def assign(
    state: State,
    *,
    unique_id: str,
    action: str,
    parent_unique_id: str | None,
    event_id: str,
) -> Version:
    """The CDA identity of the document ``unique_id`` for this life-cycle step.

    * ``SUBMIT``: the first version; its id and setId are ``cda_id_for(unique_id)``.
    * ``REPLACE`` with a parent (MDM^T10, TXA-13): a new version in the parent's series
      (the series of a parent Relais never saw starts at that parent, version 1).
    * ``REPLACE`` without a parent (ORU OBX-11 ``C``: same OBR-3, same id): a new version
      in the series of ``unique_id``, with an id of its own.
    """
    if action == "SUBMIT":
        return _first_version(state, unique_id, event_id)
    if action != "REPLACE":
        raise SeriesError(f"no new version for a {action}: only SUBMIT and REPLACE build a CDA")
    return _next_version(state, unique_id, parent_unique_id, event_id)


def _first_version(state: State, unique_id: str, event_id: str) -> Version:
    """The version a SUBMIT gets: the first of its series, also for a resend."""
    set_id = cda_id_for(unique_id)
    versions = _versions(state, set_id)
    if not versions:
        _record(state, set_id, [[set_id, event_id]])
        return Version(set_id, set_id, 1, None)
    found = _existing(versions, set_id, event_id)
    # The same document submitted again by another event (a resend) is the same first version.
    return found or Version(versions[0][0], set_id, 1, None)


def _next_version(
    state: State, unique_id: str, parent_unique_id: str | None, event_id: str
) -> Version:
    """The version a REPLACE builds (the one it built already, when this event is a replay)."""
    if parent_unique_id:
        parent_cda = cda_id_for(parent_unique_id)
        set_id = state.get(f"id:{parent_cda}") or parent_cda
        new_id = cda_id_for(unique_id)
    else:
        set_id = cda_id_for(unique_id)
        new_id = cda_id_for(f"{unique_id}|correction|{event_id}")
    versions = _versions(state, set_id) or [[set_id, ""]]
    found = _existing(versions, set_id, event_id)
    if found is not None:
        return found
    replaces = versions[-1][0]
    versions.append([new_id, event_id])
    _record(state, set_id, versions)
    return Version(new_id, set_id, len(versions), replaces)


def latest(state: State, unique_id: str) -> str:
    """The CDA id of the current version of the series ``unique_id`` started or belongs to."""
    cda_id = cda_id_for(unique_id)
    set_id = state.get(f"id:{cda_id}") or cda_id
    versions = _versions(state, set_id)
    return versions[-1][0] if versions else cda_id
