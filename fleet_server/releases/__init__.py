"""Agent releases the fleet serves: the packages it holds, their signatures, the install scripts and
the self-update policy (``/install.sh``, ``/install.ps1``, ``/agent/…``)."""
