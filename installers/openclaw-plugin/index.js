// ClawFleet plugin for OpenClaw (plain JavaScript: OpenClaw installs only compiled plugins): tells the local
// ClawFleet agent's bridge (POST http://127.0.0.1:17890/events) when the gateway starts or stops, a model call or
// a run ends (the agent then reads the transcripts at once) and a tool call returns (name, outcome, duration;
// never its arguments or result). Fire-and-forget: every POST
// has a short timeout, every error is swallowed, no handler ever awaits the network, so the
// gateway is never blocked or broken by a missing or slow agent.

const PLUGIN_VERSION = "0.2.0";

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
    /** ids of the session and run a hook is about (its context, else the event) */
    const ids = (event, ctx) => ({
      agentId: ctx?.agentId ?? "main",
      sessionId: ctx?.sessionId ?? event?.sessionId ?? "",
      sessionKey: ctx?.sessionKey ?? "",
      runId: ctx?.runId ?? event?.runId ?? "",
    });
    on("llm_output", (event, ctx) => {
      post(cfg, "/events", { type: "llm_output", ts: Date.now(), ...ids(event, ctx) });
    });
    on("agent_end", (event, ctx) => {
      post(cfg, "/events", { type: "agent_end", ts: Date.now(), ...ids(event, ctx) });
    });
    on("after_tool_call", (event, ctx) => {
      const error = event?.error;
      post(cfg, "/events", {
        type: "after_tool_call",
        ts: Date.now(),
        ...ids(event, ctx),
        toolCallId: event?.toolCallId ?? ctx?.toolCallId ?? "",
        toolName: event?.toolName ?? ctx?.toolName ?? "",
        error: error === undefined || error === null ? false : typeof error === "string" ? error.slice(0, 500) : true,
        durationMs: typeof event?.durationMs === "number" ? event.durationMs : undefined,
      });
    });
  },
};
