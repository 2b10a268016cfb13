"""The transcode stage: CDA checks, CDA builders (CR-BIO, CR-IMG, N1), lab catalogues."""
