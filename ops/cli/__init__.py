"""The `relais` command line: one module per command group."""
