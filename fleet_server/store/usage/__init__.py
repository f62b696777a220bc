"""Token usage: the ledger (records with hourly and all-time rollups, :mod:`.ledger`), prices and
re-pricing (:mod:`.prices`), and the one module every view reads its sums from (:mod:`.sums`)."""
