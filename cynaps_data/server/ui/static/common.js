// Shared helpers for the workbench pages. Task data is only ever put in the page as text
// (textContent / text nodes); nothing here uses innerHTML, eval or inline handlers.
const KEY = "cynaps.session";

export function getKey() { return sessionStorage.getItem(KEY); }
export function setKey(key) { sessionStorage.setItem(KEY, key); }
export function clearKey() { sessionStorage.removeItem(KEY); }

export class ApiError extends Error {
  constructor(status, body) {
    const message = body && body.error && body.error.message ? body.error.message : `HTTP ${status}`;
    super(message);
    this.status = status;
    this.code = body && body.error ? body.error.code : null;
  }
}

/** Call the platform API with the session key; 204 gives null. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Create an element; string children become text nodes (never parsed as HTML). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function show(id, visible) { document.getElementById(id).hidden = !visible; }
export function setText(id, text) { document.getElementById(id).textContent = text; }

const ASSET_PATH = /^\/v1\/projects\/[A-Za-z0-9_-]{1,64}\/assets\/[0-9a-f]{64}$/;
const IMAGE_KEY = /(^|_|\b)(image|img|photo|picture|thumbnail|thumb|avatar|icon)(s)?($|_|\b)/i;
const IMAGE_EXT = /\.(png|jpe?g|gif|webp|bmp|svg|avif)$/i;
let objectUrls = [];

/**
 * Where an image comes from, or null: ``{asset: path}`` for this platform's own asset URLs
 * (read with the session key, shown through a blob: URL), ``{url}`` for an absolute http(s)
 * URL. Anything else (javascript:, data:, blob:, other paths of this origin) is refused.
 */
export function imageSource(value) {
  if (value && typeof value === "object" && !Array.isArray(value)) value = value.url;
  if (typeof value !== "string" || value.length > 4096) return null;
  const text = value.trim();
  let url;
  try { url = new URL(text, window.location.origin); } catch (_) { return null; }
  if (url.protocol !== "https:" && url.protocol !== "http:") return null;
  if (url.origin === window.location.origin) {
    return ASSET_PATH.test(url.pathname) && !url.search && !url.hash ? { asset: url.pathname } : null;
  }
  if (!/^https?:\/\//i.test(text)) return null; // external URLs must be written in full
  return { url: url.href };
}

function isImage(key, value) {
  const source = imageSource(value);
  if (source === null) return null;
  if (source.asset) return source;
  return IMAGE_KEY.test(key) || IMAGE_EXT.test(new URL(source.url).pathname) ? source : null;
}

async function loadAsset(img, path) {
  try {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${getKey()}` }, credentials: "omit" });
    const blob = await response.blob();
    if (!response.ok || !/^image\/(png|jpeg|gif|webp)$/.test(blob.type)) throw new Error(`HTTP ${response.status}`);
    const objectUrl = URL.createObjectURL(blob);
    objectUrls.push(objectUrl);
    img.src = objectUrl;
  } catch (e) {
    img.replaceWith(el("p", { className: "error", text: `Image could not be loaded (${e.message}).` }));
  }
}

/** Render a task's data: images, text blocks, then the other fields as a table. */
export function renderData(container, data) {
  objectUrls.forEach((u) => URL.revokeObjectURL(u));
  objectUrls = [];
  container.replaceChildren();
  const rows = [];
  for (const [key, value] of Object.entries(data || {})) {
    const image = isImage(key, value);
    if (image) {
      const img = el("img", { alt: `${key} (image from the task)`, referrerpolicy: "no-referrer", loading: "lazy" });
      if (image.asset) loadAsset(img, image.asset);
      else img.src = image.url;
      container.append(el("figure", { className: "field image" }, img, el("figcaption", { text: key })));
    } else if (typeof value === "string") {
      container.append(el("section", { className: "field text" },
        el("h3", { text: key }), el("div", { className: "text-value", text: value })));
    } else {
      rows.push(el("tr", {}, el("th", { scope: "row", text: key }),
        el("td", { text: value === null ? "null" : typeof value === "object" ? JSON.stringify(value, null, 1) : String(value) })));
    }
  }
  if (rows.length) {
    container.append(el("table", { className: "field other" },
      el("caption", { text: "Other fields" }), el("tbody", {}, rows)));
  }
  if (!container.childNodes.length) container.append(el("p", { className: "muted", text: "(this task has no data fields)" }));
}

/** Label buttons 1..n (shortcuts 1–9 for the first nine); calls onPick(index). */
export function renderLabels(container, labels, onPick) {
  container.replaceChildren();
  labels.forEach((label, i) => {
    const text = typeof label === "string" ? label : JSON.stringify(label);
    const button = el("button", { type: "button", className: "label", "aria-pressed": "false", dataset: { index: String(i) } },
      i < 9 ? el("kbd", { text: String(i + 1) }) : null, el("span", { text }));
    button.addEventListener("click", () => onPick(i));
    container.append(button);
  });
}

export function markSelected(container, index) {
  for (const button of container.querySelectorAll("button.label")) {
    const on = Number(button.dataset.index) === index;
    button.classList.toggle("selected", on);
    button.setAttribute("aria-pressed", on ? "true" : "false");
  }
}

// inputs nothing is typed into: a focused checkbox (e.g. pairwise "much better") keeps the keys
const UNTYPED_INPUTS = new Set(["checkbox", "radio", "button", "submit", "reset", "image", "range", "color", "file"]);

/** True when a keystroke is typed into a form field (shortcuts must not fire then). */
export function typing(event) {
  const t = event.target;
  if (!(t instanceof HTMLElement)) return false;
  if (t.tagName === "INPUT") return !UNTYPED_INPUTS.has(t.type);
  return t.isContentEditable || ["TEXTAREA", "SELECT"].includes(t.tagName);
}

/**
 * Sign-in: an invite token in the URL fragment is exchanged once for a session key; otherwise
 * the form asks for a key. The key is kept in sessionStorage (this tab only), never in the URL.
 */
export async function signIn(roles, onReady) {
  const form = document.getElementById("signin-form");
  const input = document.getElementById("signin-key");
  const error = (message) => { setText("signin-error", message); show("signin-error", Boolean(message)); };
  const enter = async () => {
    try {
      const me = await api("GET", "/v1/me");
      if (!roles.includes(me.role)) {
        clearKey();
        show("app", false);
        show("signin", true);
        error(`This page is for ${roles.join(" or ")} keys; that key belongs to a ${me.role}.`);
        return;
      }
      error("");
      show("signin", false);
      show("app", true);
      setText("who", `${me.name} (${me.role})`);
      await onReady(me);
    } catch (e) {
      clearKey();
      show("signin", true);
      show("app", false);
      error(e instanceof ApiError && e.status === 401 ? "That key was not accepted." : `Sign-in failed: ${e.message}`);
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    input.value = "";
    if (!key) { error("Enter your key."); return; }
    setKey(key);
    await enter();
  });
  document.getElementById("signout").addEventListener("click", () => {
    clearKey();
    window.location.replace(window.location.pathname);
  });
  const invite = /^#invite=(inv_[A-Za-z0-9_-]{10,200})$/.exec(window.location.hash);
  if (window.location.hash) history.replaceState(null, "", window.location.pathname);
  if (invite) {
    try {
      const session = await api("POST", "/v1/invites/redeem", { token: invite[1] });
      setKey(session.api_key);
    } catch (e) {
      error(e.message);
    }
  }
  if (getKey()) await enter();
  else { show("signin", true); input.focus(); }
}
