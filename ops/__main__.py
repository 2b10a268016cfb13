"""``python -m ops``: the ``relais`` command, for subprocesses that know only the interpreter."""

from ops.cli.main import main

main()
