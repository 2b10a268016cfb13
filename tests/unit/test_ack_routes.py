"""RELAIS_ACK_ROUTES and the producer's answer to a ZAM."""

from __future__ import annotations

import pytest

from producers.mllp.ack_routes import AckRouteError, Endpoint, accepted, parse_routes


def test_routes_map_each_facility_to_its_listener() -> None:
    routes = parse_routes(" CHU-X=10.0.0.5:6661, LABO-Y = lab.example:2575 ,")
    assert dict(routes) == {
        "CHU-X": Endpoint("10.0.0.5", 6661),
        "LABO-Y": Endpoint("lab.example", 2575),
    }
    assert dict(parse_routes("")) == {}


@pytest.mark.parametrize("bad", ["CHU-X", "CHU-X=host", "=h:1", "CHU-X=h:port", "CHU-X=h:70000"])
def test_a_bad_route_names_itself(bad: str) -> None:
    with pytest.raises(AckRouteError, match="RELAIS_ACK_ROUTES"):
        parse_routes(bad)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"MSH|^~\\&|A|B|C|D|20261122||ACK|1|P|2.6\rMSA|AA|ZAM1\r", (True, "AA")),
        (b"MSH|^~\\&|A|B|C|D|20261122||ACK|1|P|2.6\rMSA|CA|ZAM1\r", (True, "CA")),
        (b"MSH|^~\\&|A|B|C|D|20261122||ACK|1|P|2.6\nMSA|AE|ZAM1\n", (False, "AE")),
        (b"MSH|^~\\&|A|B|C|D|20261122||ACK|1|P|2.6\rMSA|AR|ZAM1\r", (False, "AR")),
        (b"garbage", (False, "no MSA")),
    ],
)
def test_the_producer_takes_the_zam_with_aa_or_ca(
    answer: bytes, expected: tuple[bool, str]
) -> None:
    assert accepted(answer) == expected
