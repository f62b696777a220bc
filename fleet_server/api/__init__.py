"""REST API (``routes``) and Prometheus ``/metrics`` (``metrics``)."""
