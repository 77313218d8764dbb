"""twisted.internet's protocol layer, over the weft host's transport."""
