"""The route stage: destinations, recipients and the release policy."""
