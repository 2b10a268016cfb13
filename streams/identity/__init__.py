"""The identity stage: INS rules, per-patient state and holds, INSi, the Faust shell."""
