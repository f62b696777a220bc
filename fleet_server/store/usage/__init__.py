"""Token usage: the ledger (records and hourly rollup, :mod:`.ledger`), prices and re-pricing
(:mod:`.prices`), and the sums the views read (:mod:`.days`, :mod:`.summary`)."""
