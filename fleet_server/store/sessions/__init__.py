"""OpenClaw sessions, runs (turns) and tool calls, and the OpenClaw/agent versions devices run.

- :mod:`.ingest` stores what agents send (runs replace older revisions of themselves; each session row
  keeps the sums of its runs, updated in the same transaction) and records version changes;
- :mod:`.costs` prices runs with the price rules and re-prices them when a rule changes;
- :mod:`.queries` answers the sessions, runs and tools views and the REST API (keyset paging);
- :mod:`.drift` compares failure and token figures before and after a device changed version.
"""
