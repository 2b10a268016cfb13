"""The registry objects of an ``lcm:SubmitObjectsRequest``, read by the sandbox (pure).

ebXML RegRep 3.0 (ebRIM 3.0 §2-4): ``ExtrinsicObject`` (a DocumentEntry),
``RegistryPackage`` (a SubmissionSet or Folder), ``Association``, ``Classification``
(nested in, or beside, the object it classifies) and ``ExternalIdentifier``, each with
its ``Slot``s. IHE ITI TF-3 §4.2.3 says which of them make an XDS submission; the checks
are in :mod:`sandboxes.dmp_metadata`. Read with XPath over the received tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lxml import etree

from sandboxes.dmp_xml import elements, first, strings


def slots(node: etree._Element) -> dict[str, tuple[str, ...]]:
    """The ``rim:Slot`` children of ``node``: name -> values."""
    return {
        str(slot.get("name", "")): tuple(strings(slot, "rim:ValueList/rim:Value"))
        for slot in elements(node, "rim:Slot")
    }


@dataclass(frozen=True)
class Classification:
    id: str
    scheme: str  # classificationScheme ('' for a classificationNode)
    node: str  # nodeRepresentation, or the classificationNode
    classified: str  # classifiedObject
    slots: Mapping[str, tuple[str, ...]]

    @property
    def coding_scheme(self) -> str:
        values = self.slots.get("codingScheme", ())
        return values[0] if values else ""


@dataclass(frozen=True)
class RimObject:
    """An ExtrinsicObject or a RegistryPackage."""

    id: str
    kind: str  # ExtrinsicObject | RegistryPackage
    attributes: Mapping[str, str]
    slots: Mapping[str, tuple[str, ...]]
    name: str
    classifications: tuple[Classification, ...]
    identifiers: tuple[tuple[str, str, str], ...]  # (scheme, value, registryObject)

    def slot(self, name: str) -> str:
        values = self.slots.get(name, ())
        return values[0] if values else ""

    def coded(self, scheme: str) -> tuple[Classification, ...]:
        return tuple(c for c in self.classifications if c.scheme == scheme)

    def identifier(self, scheme: str) -> str:
        found = [value for s, value, _ in self.identifiers if s == scheme]
        return found[0] if len(found) == 1 else ""


@dataclass(frozen=True)
class Association:
    id: str
    type: str
    source: str
    target: str
    slots: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Objects:
    """What a SubmitObjectsRequest submits."""

    extrinsic: tuple[RimObject, ...]
    packages: tuple[RimObject, ...]
    associations: tuple[Association, ...]
    loose: tuple[Classification, ...]  # Classifications beside their object

    def classified_as(self, object_id: str, node: str) -> bool:
        """Whether ``object_id`` is classified by the ``classificationNode`` ``node``."""
        nested = [c for p in self.packages if p.id == object_id for c in p.classifications]
        return any(c.node == node and not c.scheme for c in (*self.loose, *nested))


def read_objects(request: etree._Element) -> Objects:
    """The registry objects of an ``lcm:SubmitObjectsRequest`` element."""
    listed = "rim:RegistryObjectList/"
    return Objects(
        extrinsic=tuple(_object(e) for e in elements(request, listed + "rim:ExtrinsicObject")),
        packages=tuple(_object(e) for e in elements(request, listed + "rim:RegistryPackage")),
        associations=tuple(
            Association(
                a.get("id", ""),
                a.get("associationType", ""),
                a.get("sourceObject", ""),
                a.get("targetObject", ""),
                slots(a),
            )
            for a in elements(request, listed + "rim:Association")
        ),
        loose=tuple(_classification(c) for c in elements(request, listed + "rim:Classification")),
    )


def _object(node: etree._Element) -> RimObject:
    return RimObject(
        id=node.get("id", ""),
        kind=etree.QName(node).localname,
        attributes={str(k): str(v) for k, v in node.attrib.items()},
        slots=slots(node),
        name=first(node, "rim:Name/rim:LocalizedString/@value"),
        classifications=tuple(_classification(c) for c in elements(node, "rim:Classification")),
        identifiers=tuple(
            (i.get("identificationScheme", ""), i.get("value", ""), i.get("registryObject", ""))
            for i in elements(node, "rim:ExternalIdentifier")
        ),
    )


def _classification(node: etree._Element) -> Classification:
    return Classification(
        id=node.get("id", ""),
        scheme=node.get("classificationScheme", ""),
        node=node.get("nodeRepresentation") or node.get("classificationNode") or "",
        classified=node.get("classifiedObject", ""),
        slots=slots(node),
    )
