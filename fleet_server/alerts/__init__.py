"""Alerting: rules → incidents (a state machine stored in the database) → notifications through
Apprise, sent off the ingest path; silences (acknowledge, snooze, maintenance, quiet hours).

- :mod:`.rules`: rule kinds, their settings, validation, scopes and the defaults of a new install.
- :mod:`.conditions`: what each kind of rule sees for a device (pure functions over the fleet cache).
- :mod:`.engine`: evaluation and the incident state machine (pending → firing → resolved).
- :mod:`.budgets`, :mod:`.errors`: token/cost budgets and log-fingerprint rules.
- :mod:`.silences`: snoozes, maintenance windows, quiet hours.
- :mod:`.channels`: Apprise channels (URL encrypted at rest, masked when shown, "send test").
- :mod:`.dispatch`: grouping window, the notification queue, retries with backoff, the log.
- :mod:`.messages`: the text of notifications.
- :mod:`.preview`: how often a rule would have fired over the last 7 days.
"""
