"""``relais console``: the operators' web application over the document index."""
