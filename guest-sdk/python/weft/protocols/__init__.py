"""twisted.protocols: ready-made protocols."""
