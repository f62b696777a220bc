"""Credentials through Mosquitto's dynamic-security plugin (``$CONTROL/dynamic-security/v1``).

:class:`DynSecClient` sends JSON commands over MQTT 5 and manages device accounts; the roles
and ACLs it installs are defined in :mod:`broker.acl`.

Behaviour of Mosquitto 2.0.11, measured here (the kicks are asserted in ``tests/broker/test_dynsec.py``):

- ``setClientPassword``, ``modifyClient``, ``disableClient`` and ``deleteClient`` kick every live
  session of that username with DISCONNECT reason 0x98 (administrative action), in about 1 ms.
- ``modifyRole`` / ``addRoleACL`` kick nobody: ACL changes apply from the next packet on.
- A command that changes the *sender's own* client (e.g. ``addClientRole`` on itself) kicks the
  sender before the reply is sent (mosquitto issue #2474); :meth:`DynSecClient.ensure_server_role`
  handles that case.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from broker.acl import (
    DEFAULT_ACL_ACCESS,
    DEVICE_ROLE_PREFIX,
    DEVICE_SHARED_ROLE,
    SERVER_ROLE,
    SERVER_USERNAME,
    device_client_roles,
    device_role_acls,
    device_role_name,
    device_shared_role_acls,
    same_acls,
    server_role_acls,
)
from broker.acl import check_device_account as _check_device
from shared.mqtt_client import mqtt5_client
from shared.topics import is_valid_device_id

__all__ = ["CONTROL_TOPIC", "RESPONSE_TOPIC", "SERVER_ROLE", "SERVER_USERNAME", "DynSecClient",
           "DynSecConnectionError", "DynSecError"]

log = logging.getLogger("clawfleet.broker.dynsec")

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
"""Topic the plugin takes JSON commands on."""
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
"""Topic the plugin publishes replies on (to every admin subscribed, so replies are correlated)."""
CHANGE_TIMEOUT_S = 15.0
"""Round-trip timeout of commands that change devices, seconds: each makes Mosquitto 2.0 rewrite
its whole dynsec file (about 0.25 s at 10,000 devices here, more on a slow disk)."""


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not password:
        raise ValueError("a device password must be a non-empty string")


class DynSecError(RuntimeError):
    """The plugin answered a command with an error (``command``: its name, ``error``: the text)."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"dynamic-security {command}: {error}")
        self.command = command
        self.error = error


class DynSecConnectionError(ConnectionError):
    """No usable admin connection: refused (``reason_code`` set), not authorised, lost or timed out."""

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class DynSecClient:
    """Admin connection to the dynamic-security plugin over MQTT 5 (paho, background thread).

    Connects in the constructor and reconnects on its own if the connection drops. Thread-safe:
    :meth:`execute` sends one request at a time.

    Args:
        host, port: the broker's address.
        username, password: a dynsec admin account (one allowed on ``$CONTROL/dynamic-security/#``).
        tls: TLS context for an ``mqtts`` listener; None for plain TCP (loopback only).
        client_id: MQTT client id; default ``<username>-dynsec-<random>``. Two connections with
            the same id kick each other.
        connect_timeout: seconds to wait for CONNACK and SUBACK.

    Raises:
        DynSecConnectionError: the broker is unreachable, refused the account (``reason_code``,
            e.g. 0x87), or the account may not use the control topic.
    """

    def __init__(self, host: str, port: int, username: str, password: str, tls: ssl.SSLContext | None = None,
                 client_id: str | None = None, *, connect_timeout: float = 5.0) -> None:
        self.host, self.port, self.username = host, port, username
        self._lock = threading.Lock()  # one request at a time
        self._cond = threading.Condition()  # guards the fields below, signalled by paho's thread
        self._connected = False  # CONNACK ok and response topic subscribed
        self._generation = 0  # bumped on every disconnect
        self._connack: mqtt.ReasonCode | None = None
        self._sub_error: str | None = None
        self._pending: str | None = None
        self._reply: list[dict[str, Any]] | None = None
        self._pub_failures: dict[int, str] = {}
        self._closed = False
        cid = client_id or f"{username}-dynsec-{uuid.uuid4().hex[:8]}"
        c = mqtt5_client(cid, username, password, tls)
        c.reconnect_delay_set(1, 10)
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_subscribe, c.on_publish, c.on_message = self._on_subscribe, self._on_publish, self._on_message
        self._client = c
        try:
            c.connect(host, port, keepalive=30)
        except ssl.SSLError as exc:  # a certificate the CA does not vouch for, or TLS to a plain port
            raise DynSecConnectionError(f"TLS handshake with the MQTT broker at {host}:{port} failed: {exc} "
                                        "(check the CA file and that the port is the broker's TLS port)") from exc
        except OSError as exc:
            raise DynSecConnectionError(f"cannot reach the MQTT broker at {host}:{port}: {exc}") from exc
        c.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._connected or self._sub_error or (
                self._connack is not None and self._connack.is_failure), connect_timeout)
            connack, sub_error, ok = self._connack, self._sub_error, self._connected
        if not ok:
            self.close()
            if connack is not None and connack.is_failure:
                raise DynSecConnectionError(f"the broker at {host}:{port} refused {username!r}: {connack} "
                                            f"(0x{connack.value:02x})", connack.value)
            raise DynSecConnectionError(sub_error or f"no answer from the broker at {host}:{port} within "
                                        f"{connect_timeout} s")

    # paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: mqtt.ReasonCode, props: Any) -> None:
        with self._cond:
            first = self._connack is None
            self._connack = rc
            self._cond.notify_all()
        if not rc.is_failure:
            client.subscribe(RESPONSE_TOPIC, qos=1)
        elif first:
            client.disconnect()  # refused at once: no retries; the constructor raises
        else:
            log.warning("the broker refused the dynsec account %r on reconnect: %s", self.username, rc)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: list[mqtt.ReasonCode],
                      props: Any) -> None:
        with self._cond:
            if rcs and rcs[0].is_failure:
                self._sub_error = (f"{self.username!r} may not subscribe to {RESPONSE_TOPIC} ({rcs[0]}): "
                                   "not a dynamic-security admin account")
            else:
                self._connected = True
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: mqtt.ReasonCode,
                       props: Any) -> None:
        with self._cond:
            self._connected = False
            self._generation += 1
            self._cond.notify_all()
        if not self._closed and self._connack is not None and not self._connack.is_failure:
            log.info("dynsec connection as %r lost (%s); reconnecting", self.username, rc)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: mqtt.ReasonCode, props: Any) -> None:
        if rc.is_failure:
            with self._cond:
                self._pub_failures[mid] = str(rc)
                self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable dynsec response: %.200r", msg.payload)
            return
        with self._cond:
            if self._pending and any(str(r.get("correlationData", "")).startswith(self._pending + ":")
                                     for r in responses if isinstance(r, dict)):
                self._reply = responses
                self._cond.notify_all()

    # requests
    def execute(self, commands: list[dict[str, Any]], timeout: float = 5.0) -> list[dict[str, Any]]:
        """Send ``{"commands": commands}`` and return the plugin's responses, one dict per command.

        Each response has ``command``, maybe ``data`` (for get/list commands) and, on failure,
        ``error``. ``timeout`` is in seconds, for the whole round trip. Replies are matched by
        ``correlationData``, which the plugin omits for an unknown command name: a request made
        only of unknown commands therefore times out.

        Raises:
            DynSecError: a command failed (the first failing one is reported).
            DynSecConnectionError: not connected, the publish was refused, the connection dropped
                before the reply (e.g. the command kicked this very account), or no reply in time.
        """
        replies = self._request(commands, timeout)
        for reply in replies:
            if "error" in reply:
                raise DynSecError(str(reply.get("command", "?")), str(reply["error"]))
        return replies

    def _request(self, commands: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        if not commands:
            return []
        deadline = time.monotonic() + timeout
        with self._lock:
            corr = uuid.uuid4().hex
            payload = {"commands": [{**c, "correlationData": f"{corr}:{i}"} for i, c in enumerate(commands)]}
            names = ", ".join(str(c.get("command")) for c in commands)
            with self._cond:
                if self._closed:
                    raise DynSecConnectionError("the dynsec client is closed")
                if not self._cond.wait_for(lambda: self._connected, max(0.0, deadline - time.monotonic())):
                    raise DynSecConnectionError(f"not connected to the broker at {self.host}:{self.port}")
                self._pending, self._reply, gen = corr, None, self._generation
            try:
                info = self._client.publish(CONTROL_TOPIC, json.dumps(payload), qos=1)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    raise DynSecConnectionError(f"could not send {names}: {mqtt.error_string(info.rc)}")
                with self._cond:
                    self._cond.wait_for(lambda: self._reply is not None or info.mid in self._pub_failures
                                        or self._generation != gen, max(0.0, deadline - time.monotonic()))
                    if self._reply is not None:
                        return self._reply
                    if info.mid in self._pub_failures:
                        raise DynSecConnectionError(f"the broker refused {names} from {self.username!r}: "
                                                    f"{self._pub_failures.pop(info.mid)}")
                    if self._generation != gen:
                        raise DynSecConnectionError(f"connection lost before the reply to {names} (a command "
                                                    "that changes the connected account kicks it)")
                    raise DynSecConnectionError(f"no reply to {names} within {timeout} s")
            finally:
                with self._cond:
                    self._pending = None

    def _one(self, command: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        return self.execute([command], timeout)[0]

    def _wait_connected(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._connected, timeout)

    def close(self) -> None:
        """Disconnect and stop the network thread. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> DynSecClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # high level
    def get_client(self, username: str) -> dict[str, Any] | None:
        """The dynsec client record (``username``, ``clientid``, ``roles`` [{rolename, priority?}],
        ``groups``, ``disabled``?, ``textname``?) or None when there is none."""
        try:
            return self._one({"command": "getClient", "username": username})["data"]["client"]
        except DynSecError as exc:
            if exc.error == "Client not found":
                return None
            raise

    def _get_role(self, rolename: str) -> dict[str, Any] | None:
        try:
            return self._one({"command": "getRole", "rolename": rolename})["data"]["role"]
        except DynSecError as exc:
            if exc.error == "Role not found":
                return None
            raise

    def _ensure_role(self, rolename: str, acls: list[dict[str, Any]], textname: str | None) -> None:
        """Create the role, or replace its ACLs when they differ (``modifyRole`` kicks nobody).
        ``textname``: the role's label on the broker (None: none, as for per-device roles, to keep
        the dynsec file small)."""
        role = self._get_role(rolename)
        if role is None:
            label = {"textname": textname} if textname else {}
            try:
                self._one({"command": "createRole", "rolename": rolename, **label, "acls": acls})
                return
            except DynSecError as exc:  # created meanwhile by another admin
                if exc.error != "Role already exists":
                    raise
                role = self._get_role(rolename) or {}
        if not same_acls(role.get("acls", []), acls):
            log.info("updating the ACLs of dynsec role %s", rolename)
            self._one({"command": "modifyRole", "rolename": rolename, "acls": acls})

    def ensure_server_role(self, username: str | None = None, *, timeout: float = 10.0) -> None:
        """Make sure the default ACL access, the ``clawfleet-server`` role and its ACLs, and the
        shared device role (:meth:`ensure_device_role`) exist and
        that ``username`` (default: the connected account) holds the role. Idempotent: when all is
        in place it only reads, so live sessions of the server account are not disturbed.

        Adding the role to the connected account itself kicks this connection (Mosquitto
        2.0); it is then awaited to reconnect (up to ``timeout`` s) and the result verified.

        Raises:
            DynSecError, DynSecConnectionError: as :meth:`execute`; also when the role is still
                missing after the self-assignment.
        """
        username = username or self.username
        acl = self._one({"command": "getDefaultACLAccess"}).get("data", {}).get("acls", [])
        current = {a.get("acltype"): a.get("allow") for a in acl}
        if any(current.get(k) != v for k, v in DEFAULT_ACL_ACCESS.items()):
            log.info("setting the dynsec default ACL access to %s", DEFAULT_ACL_ACCESS)
            self._one({"command": "setDefaultACLAccess",
                       "acls": [{"acltype": k, "allow": v} for k, v in DEFAULT_ACL_ACCESS.items()]})
        self._ensure_role(SERVER_ROLE, server_role_acls(), "ClawFleet server")
        self.ensure_device_role()
        client = self.get_client(username)
        if client is None:
            raise DynSecError("getClient", f"the server account {username!r} does not exist")
        if any(r.get("rolename") == SERVER_ROLE for r in client.get("roles", [])):
            return
        log.info("adding role %s to dynsec client %s", SERVER_ROLE, username)
        add = {"command": "addClientRole", "username": username, "rolename": SERVER_ROLE}
        if username != self.username:
            self._one(add)
            return
        try:
            self._one(add)
        except DynSecConnectionError:
            log.info("the broker kicked this admin connection for changing its own roles (expected)")
        deadline = time.monotonic() + timeout
        while True:  # the kick may also land after the reply, during this check
            try:
                client = self.get_client(username) or {}
                break
            except DynSecConnectionError:
                if time.monotonic() > deadline or not self._wait_connected(max(0.0, deadline - time.monotonic())):
                    raise
        if not any(r.get("rolename") == SERVER_ROLE for r in client.get("roles", [])):
            raise DynSecError("addClientRole", f"role {SERVER_ROLE} still missing from {username!r}")

    def create_device(self, device_id: str, password: str) -> None:
        """Create (or, when it exists, update) the device's client and its ``device-<id>`` role.

        The client gets username = fixed client id = ``device_id``, this password, its own role
        and the shared :data:`~broker.acl.DEVICE_SHARED_ROLE`, and is enabled. A new device costs
        one round trip and two saves of the broker's dynsec file (``createRole`` + ``createClient``
        in one message; Mosquitto 2.0 saves after each). Updating an existing client kicks its
        live session.

        Raises:
            TopicError: invalid or reserved device id (before any command is sent).
            ValueError: empty password.
            DynSecError, DynSecConnectionError: as :meth:`execute`.
        """
        _check_device(device_id)
        _check_password(password)
        role, acls = device_role_name(device_id), device_role_acls(device_id)
        fields = {"username": device_id, "password": password, "clientid": device_id,
                  "roles": device_client_roles(device_id)}
        role_reply, client_reply = self._request([{"command": "createRole", "rolename": role, "acls": acls},
                                                  {"command": "createClient", **fields}], CHANGE_TIMEOUT_S)
        if "error" in role_reply:
            if role_reply["error"] != "Role already exists":
                raise DynSecError("createRole", str(role_reply["error"]))
            self._ensure_role(role, acls, None)  # left from an earlier enrollment: make its ACLs current
        if "error" not in client_reply:
            return
        if client_reply["error"] == "Role not found":  # the shared role is missing (a broker set up by hand)
            self.ensure_device_role()
            self._one({"command": "createClient", **fields}, CHANGE_TIMEOUT_S)
        elif client_reply["error"] == "Client already exists":
            log.info("dynsec client %s exists; updating it", device_id)
            self.execute([{"command": "modifyClient", **fields}, {"command": "enableClient",
                                                                  "username": device_id}], CHANGE_TIMEOUT_S)
        else:
            raise DynSecError("createClient", str(client_reply["error"]))

    def ensure_device_role(self) -> None:
        """Create :data:`~broker.acl.DEVICE_SHARED_ROLE`, or fix its ACLs. Only reads when it is in place."""
        self._ensure_role(DEVICE_SHARED_ROLE, device_shared_role_acls(), "ClawFleet devices (all)")

    def set_device_password(self, device_id: str, password: str, *, enable: bool = False) -> None:
        """Rotate a device's key (one ``setClientPassword``: one save of the dynsec file); with
        ``enable`` also enable its client (a revoked device). Mosquitto 2.0.11 kicks the live session
        (0x98) on ``setClientPassword``, so the old key stops working at once.

        Raises:
            TopicError, ValueError: invalid id or empty password.
            DynSecError: no such device (``error`` "Client not found").
        """
        _check_device(device_id)
        _check_password(password)
        commands = [{"command": "setClientPassword", "username": device_id, "password": password}]
        if enable:
            commands.append({"command": "enableClient", "username": device_id})
        self.execute(commands, CHANGE_TIMEOUT_S)

    def disable_device(self, device_id: str) -> None:
        """Refuse the device's logins and kick its live session (0x98). Idempotent.

        Raises:
            TopicError: invalid or reserved id.  DynSecError: no such device.
        """
        self._one({"command": "disableClient", "username": _check_device(device_id)}, CHANGE_TIMEOUT_S)

    def enable_device(self, device_id: str) -> None:
        """Allow a disabled device to log in again. Idempotent.

        Raises:
            TopicError: invalid or reserved id.  DynSecError: no such device.
        """
        self._one({"command": "enableClient", "username": _check_device(device_id)}, CHANGE_TIMEOUT_S)

    def delete_device(self, device_id: str) -> bool:
        """Delete the device's client (kicking a live session with 0x98) and its role.

        Idempotent: returns True when the client existed, False when there was nothing to delete.

        Raises:
            TopicError: invalid or reserved id.  DynSecError, DynSecConnectionError: as :meth:`execute`.
        """
        _check_device(device_id)
        replies = self._request([{"command": "deleteClient", "username": device_id},
                                 {"command": "deleteRole", "rolename": device_role_name(device_id)}],
                                CHANGE_TIMEOUT_S)
        for reply, missing in zip(replies, ("Client not found", "Role not found"), strict=False):
            if "error" in reply and reply["error"] != missing:
                raise DynSecError(str(reply.get("command")), str(reply["error"]))
        return "error" not in replies[0]

    def list_device_ids(self) -> set[str]:
        """Ids of the devices the broker knows: clients whose username is a valid device id and
        that hold the role ``device-<username>``."""
        data = self._one({"command": "listClients", "verbose": True, "count": -1, "offset": 0})["data"]
        ids = set()
        for c in data.get("clients", []):
            name = c.get("username", "")
            if (is_valid_device_id(name) and name != SERVER_USERNAME
                    and any(r.get("rolename") == DEVICE_ROLE_PREFIX + name for r in c.get("roles", []))):
                ids.add(name)
        return ids

    # read-only integration accounts (see broker.acl.integration_role_acls)
    def create_integration(self, username: str, password: str, acls: list[dict[str, Any]]) -> None:
        """Create a read-only client ``username`` with its own role (same name) holding ``acls``.

        Raises:
            ValueError: empty password.  DynSecError: the client exists already, or as :meth:`execute`.
        """
        _check_password(password)
        self._ensure_role(username, acls, f"ClawFleet integration {username}")
        self._one({"command": "createClient", "username": username, "password": password,
                   "textname": f"ClawFleet integration {username}", "roles": [{"rolename": username}]})

    def delete_integration(self, username: str) -> bool:
        """Delete an integration client (kicking a live session) and its role; True when it existed."""
        replies = self._request([{"command": "deleteClient", "username": username},
                                 {"command": "deleteRole", "rolename": username}], 5.0)
        for reply, missing in zip(replies, ("Client not found", "Role not found"), strict=False):
            if "error" in reply and reply["error"] != missing:
                raise DynSecError(str(reply.get("command")), str(reply["error"]))
        return "error" not in replies[0]
