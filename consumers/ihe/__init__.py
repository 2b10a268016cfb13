"""The IHE transactions the DMP speaks: ITI-41, ITI-18, ITI-62, MTOM/XOP, the VIHF."""
