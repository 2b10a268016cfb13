"""HL7 v2: parsing a message, its segments and errors, building ACKs and business ACKs."""
