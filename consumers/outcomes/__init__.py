"""Every later outcome reaches the sender: ZAM N for what an AA promised and will not happen.

``core`` decides (pure), ``reasons`` says it (ERR-5/ERR-8), ``holds`` keeps the
held documents until their reminder, ``sink`` is the thin shell on the sink loop.
"""
