"""IHE XDS: the metadata of a document (from its CDA), the code systems, the ebRIM names."""
