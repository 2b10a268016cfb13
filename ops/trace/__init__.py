"""A document's journey across the topics (`relais trace`, `relais explain`)."""
