// ClawFleet plugin for OpenClaw (plain JavaScript: OpenClaw installs only compiled plugins): forwards gateway lifecycle and LLM usage to the local
// ClawFleet agent's bridge (POST http://127.0.0.1:17890/events). Fire-and-forget: every POST
// has a short timeout, every error is swallowed, no handler ever awaits the network, so the
// gateway is never blocked or broken by a missing or slow agent.

const PLUGIN_VERSION = "0.1.0";

/** @typedef {{bridgeUrl?: string, token?: string, timeoutMs?: number}} Config */

/** @param {Config} cfg @param {string} path @param {unknown} body */
function post(cfg, path, body) {
  const url = (cfg.bridgeUrl || "http://127.0.0.1:17890").replace(/\/+$/, "") + path;
  const headers = { "Content-Type": "application/json" };
  if (cfg.token) headers["Authorization"] = `Bearer ${cfg.token}`;
  try {
    const signal = AbortSignal.timeout(cfg.timeoutMs ?? 1500);
    fetch(url, { method: "POST", headers, body: JSON.stringify(body), signal }).catch(() => {});
  } catch {
    // never throw into the gateway
  }
}

function safe(fn) {
  return (...args) => {
    try {
      fn(...args);
    } catch {
      // a bug here must not reach the gateway
    }
  };
}

export default {
  id: "clawfleet",
  name: "ClawFleet",
  register(api) {
    /** @type {Config} */
    const cfg = (api && (api.pluginConfig || api.config)) || {};
    const on = (hook, handler) => {
      if (api && typeof api.on === "function") api.on(hook, safe(handler));
    };
    on("gateway_start", (event) => {
      post(cfg, "/events", { type: "gateway_start", port: event?.port, ts: Date.now() });
      post(cfg, "/openclaw", { plugin_version: PLUGIN_VERSION, openclaw_version: api?.runtime?.version });
    });
    on("gateway_stop", (event) => {
      post(cfg, "/events", { type: "gateway_stop", reason: event?.reason, ts: Date.now() });
    });
    on("llm_output", (event, ctx) => {
      post(cfg, "/events", {
        type: "llm_output",
        ts: Date.now(),
        agentId: ctx?.agentId ?? "main",
        sessionId: event?.sessionId ?? "",
        runId: event?.runId ?? "",
        entryId: event?.entryId ?? event?.messageId,
        provider: event?.provider ?? "",
        model: event?.model ?? "",
        usage: event?.usage,
      });
    });
  },
};
