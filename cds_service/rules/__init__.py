"""Clinical rules: one module per clinical concern, each a pure function of the patient record,
the draft orders and the time of the call. See `engine.py` for how they are chosen and run."""
