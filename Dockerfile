# ClawFleet fleet server with its managed Mosquitto, in one container.
#   docker build -t clawfleet-server .
#   docker compose up -d            (see docker-compose.yml: volume, ports, first steps)
# Data (SQLite database, broker config and persistence, TLS CA and certificates) lives in the
# volume at /var/lib/clawfleet. The dashboard listens on 8080 (plain HTTP, meant for a TLS proxy
# or an SSH tunnel: --behind-proxy marks cookies Secure); agents connect over MQTT TLS on 8883
# once 'clawfleet-server tls init' has made the certificates.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/clawfleet --create-home --shell /usr/sbin/nologin clawfleet

WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent_tray ./agent_tray
COPY broker ./broker
COPY fleet_server ./fleet_server
COPY shared ./shared
RUN pip install --no-cache-dir ".[server]" && rm -rf /src

USER clawfleet
ENV CLAWFLEET_DATA_DIR=/var/lib/clawfleet
VOLUME ["/var/lib/clawfleet"]
EXPOSE 8080 8883
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"
ENTRYPOINT ["clawfleet-server"]
# No local agent: inside a container it would report the container, not the host.
CMD ["run", "--host", "0.0.0.0", "--behind-proxy", "--no-local-agent"]
