"""Honest local stand-ins for national services (DMP, INSi, MSSanté), for tests and the demo.

They listen on 127.0.0.1 by default, validate what they receive as the real
service would, and keep what they accept for inspection.
"""


class Refusal(Exception):
    """A sandbox refuses a request: a service error ``code``, a ``detail`` and an HTTP status."""

    default_status = 400

    def __init__(self, code: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail
        self.status = self.default_status if status is None else status
