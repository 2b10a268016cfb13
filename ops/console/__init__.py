"""``relais console``: the operators' web application over the document index.

Server-rendered pages (aiohttp + Jinja2, no JavaScript) over :mod:`ops.index` (search,
journeys, senders, destinations, dead letters) and the bus (replays, reveals, identity
commands), each action audited with the signed-in operator's name (docs/console.md).
Modules: ``app`` (the application and its guards), ``signin``, ``pages``, ``letters``,
``holds`` (thin handlers), ``accounts``, ``sessions``, ``views`` (pure), ``bus``.

Errors (each message says what to fix)::

    ConsoleError                 ops.console.errors
    +-- AccountError             the accounts file or an account (relais console account)
    +-- Refused                  an action the console will not do (why, for the operator)
"""
