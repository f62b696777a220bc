"""The fleet overview (``/``): the device table (:mod:`.rows`, :mod:`.overview`) and the token and cost
tiles (:mod:`.tiles`)."""
