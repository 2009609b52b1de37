// Settings → API & Webhooks: API keys (shown once), webhook endpoints, test events, the delivery
// log and redelivery. Everything from the API goes into the page as text (el / textContent).
import { api, el, setText, show, signIn } from "./common.js";

const fmt = (t) => (t ? new Date(t * 1000).toLocaleString() : "—");
let current = null; // endpoint whose log is shown

async function copy(id, statusId) {
  const text = document.getElementById(id).textContent;
  try { await navigator.clipboard.writeText(text); setText(statusId, "Copied."); }
  catch (_) { setText(statusId, "Select the text and copy it (clipboard not available)."); }
}

async function loadKeys() {
  const keys = await api("GET", "/v1/api_keys");
  document.getElementById("keys").replaceChildren(...keys.data.map((k) => {
    const revoke = el("button", { type: "button", text: "Revoke", disabled: k.status !== "active" });
    revoke.addEventListener("click", async () => {
      if (!window.confirm(`Revoke "${k.name || k.id}"? Requests with it will be refused at once.`)) return;
      try { await api("DELETE", `/v1/api_keys/${encodeURIComponent(k.id)}`); setText("keys-status", `Revoked ${k.prefix}…`); }
      catch (e) { setText("keys-status", e.message); }
      await loadKeys();
    });
    return el("tr", { dataset: { key: k.id } },
      el("td", { text: k.name || "" }), el("td", {}, el("code", { text: `${k.prefix}…` })),
      el("td", { text: k.status }), el("td", { text: fmt(k.created_at) }),
      el("td", { text: fmt(k.last_used_at) }), el("td", { text: k.expires_at ? fmt(k.expires_at) : "never" }),
      el("td", {}, revoke));
  }));
}

async function loadEndpoints() {
  const list = await api("GET", "/v1/webhooks/endpoints");
  document.getElementById("endpoints").replaceChildren(...list.data.map((e) => {
    const test = el("button", { type: "button", text: "Send test event", disabled: e.disabled });
    test.addEventListener("click", async () => {
      try {
        const t = await api("POST", `/v1/webhooks/endpoints/${encodeURIComponent(e.id)}/test`);
        setText("hooks-status", `Test event ${t.message_id} queued.`);
        await showLog(e);
        setTimeout(() => showLog(e), 1500);
      } catch (err) { setText("hooks-status", err.message); }
    });
    const log = el("button", { type: "button", text: "Delivery log" });
    log.addEventListener("click", () => showLog(e));
    const toggle = el("button", { type: "button", text: e.disabled ? "Enable" : "Disable" });
    toggle.addEventListener("click", async () => {
      await api("PATCH", `/v1/webhooks/endpoints/${encodeURIComponent(e.id)}`, { disabled: !e.disabled });
      await loadEndpoints();
    });
    const remove = el("button", { type: "button", text: "Delete" });
    remove.addEventListener("click", async () => {
      if (!window.confirm(`Delete the endpoint ${e.url}?`)) return;
      await api("DELETE", `/v1/webhooks/endpoints/${encodeURIComponent(e.id)}`);
      if (current && current.id === e.id) show("log-card", false);
      await loadEndpoints();
    });
    const status = e.disabled ? `disabled: ${e.disabled_reason || ""}` : "enabled";
    return el("tr", { dataset: { endpoint: e.id } },
      el("td", {}, el("code", { text: e.url }), e.project_id ? el("div", { className: "muted", text: `project ${e.project_id}` }) : null),
      el("td", { text: e.events ? e.events.join(", ") : "all" }),
      el("td", { text: status }),
      el("td", { className: "actions" }, test, log, toggle, remove));
  }));
}

async function showLog(endpoint) {
  current = endpoint;
  show("log-card", true);
  setText("log-endpoint", endpoint.url);
  const log = await api("GET", `/v1/webhooks/endpoints/${encodeURIComponent(endpoint.id)}/attempts?limit=100`);
  document.getElementById("attempts").replaceChildren(...log.data.map((a) => {
    const again = el("button", { type: "button", text: "Redeliver" });
    again.addEventListener("click", async () => {
      try {
        await api("POST", `/v1/webhooks/endpoints/${encodeURIComponent(endpoint.id)}/deliveries/${encodeURIComponent(a.message_id)}/redeliver`);
        setText("hooks-status", `Message ${a.message_id} queued again.`);
        setTimeout(() => showLog(endpoint), 1000);
      } catch (e) { setText("hooks-status", e.message); }
    });
    const ok = a.status_code !== null && a.status_code >= 200 && a.status_code < 300;
    return el("tr", { dataset: { message: a.message_id } },
      el("td", { text: fmt(a.created_at) }), el("td", { text: a.event_type }),
      el("td", {}, el("code", { text: a.message_id })), el("td", { text: String(a.attempt) }),
      el("td", { className: ok ? "num ok" : "num error", text: a.status_code === null ? "—" : String(a.status_code) }),
      el("td", { className: "num", text: `${a.latency_ms} ms` }),
      el("td", { text: a.error ? `${a.error} ${a.response || ""}` : a.response || "" }),
      el("td", {}, again));
  }));
}

async function setup() {
  const rules = await api("GET", "/v1/webhooks/settings");
  setText("hook-rules", `${rules.https_only ? "https:// only" : "https:// or http://"}; public addresses only` +
    `${rules.allow_loopback ? " (this platform also allows 127.0.0.1 / ::1)" : ""}. ` +
    `Retries after ${rules.retry_schedule_seconds.map((s) => `${s}s`).join(", ")}.`);
  const box = document.getElementById("hook-events");
  box.replaceChildren(el("legend", { text: "Events (none checked: all)" }), ...rules.event_types.map((t) =>
    el("label", {}, el("input", { type: "checkbox", name: "event", value: t }), ` ${t}`)));
  const projects = await api("GET", "/v1/projects?limit=1000");
  document.getElementById("hook-project").replaceChildren(el("option", { value: "", text: "All projects" }),
    ...projects.data.map((p) => el("option", { value: p.id, text: p.name })));
  await loadKeys();
  await loadEndpoints();
}

document.getElementById("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = document.getElementById("key-name").value.trim();
  const days = document.getElementById("key-days").value;
  const body = { name };
  if (days) body.expires_in_days = Number(days);
  try {
    const key = await api("POST", "/v1/api_keys", body);
    setText("new-key-value", key.secret);
    show("new-key", true);
    document.getElementById("key-name").value = "";
    setText("keys-status", `Created ${key.prefix}…`);
  } catch (e) { setText("keys-status", e.message); }
  await loadKeys();
});
document.getElementById("dismiss-key").addEventListener("click", () => { setText("new-key-value", ""); show("new-key", false); });
document.getElementById("copy-key").addEventListener("click", () => copy("new-key-value", "keys-status"));

document.getElementById("hook-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const events = [...document.querySelectorAll("#hook-events input:checked")].map((i) => i.value);
  const project = document.getElementById("hook-project").value;
  const body = { url: document.getElementById("hook-url").value.trim(), events: events.length ? events : null, project_id: project || null };
  try {
    const endpoint = await api("POST", "/v1/webhooks/endpoints", body);
    setText("new-secret-value", endpoint.secret);
    show("new-secret", true);
    setText("hooks-status", `Added ${endpoint.url}`);
    document.getElementById("hook-url").value = "";
  } catch (e) { setText("hooks-status", e.message); }
  await loadEndpoints();
});
document.getElementById("dismiss-secret").addEventListener("click", () => { setText("new-secret-value", ""); show("new-secret", false); });
document.getElementById("copy-secret").addEventListener("click", () => copy("new-secret-value", "hooks-status"));
document.getElementById("refresh-log").addEventListener("click", () => current && showLog(current));

signIn(["customer"], setup);
