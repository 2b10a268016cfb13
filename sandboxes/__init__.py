"""Honest local stand-ins for national services (DMP, INSi, MSSanté), for tests and the demo.

They listen on 127.0.0.1 by default, validate what they receive as the real
service would, and keep what they accept for inspection. They judge with code of their
own, written from the specifications: they never import the client's builders or parsers
(``consumers``, ``streams``, ``producers``, ``mss_bridge``, ``ops``; an import contract in
pyproject.toml keeps it so), only the domain vocabulary.
"""


class SandboxError(Exception):
    """Every error a sandbox raises."""


class SandboxSetupError(SandboxError):
    """A sandbox cannot start: its message names the option or file to fix."""


class Refusal(SandboxError):
    """A sandbox refuses a request: a service error ``code``, a ``detail`` and an HTTP status."""

    default_status = 400

    def __init__(self, code: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail
        self.status = self.default_status if status is None else status
