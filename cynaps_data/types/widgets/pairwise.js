// Workbench widget of the "pairwise" annotation type: the prompt, then the two candidates side
// by side in an order drawn at random for every showing (recorded as the answer's "shown": "ab"
// when candidate a is on the left). Long candidates scroll together. Keys: 1 = left is better,
// 2 = right is better, 3 = tie (when allowed), M toggles "much better" (when strength is asked
// for), R writes a reason (when asked for); Enter submits (the page's key).
// Contract (cynaps_data/types/base.py, AnnotationType.widget):
// mount(box, task, onReady) -> { value(), key(event) }, and summary(box, task) for review.
// Task data only ever reaches the page through DOM properties (src, textContent), never HTML.
import { el, getKey, imageSource } from "/ui/static/common.js";

/** The page's generic data box is hidden: the widget shows the prompt and the pair itself
 * (in its randomised order; the data box would show the candidates in data order). */
export const ownsData = true;

/** The review page's vote summary: a meter per choice, and the left-position rate. */
export function summary(box, task) {
  const shares = Object.entries(task.choice_shares || {});
  const rows = shares.map(([choice, share]) =>
    el("div", { className: "share" }, el("span", { className: "share-label", text: choice }),
      el("meter", { min: "0", max: "1", value: String(share) }),
      el("span", { className: "share-value", text: `${Math.round(share * 100)}%` })));
  const bias = task.position_bias;
  if (bias && typeof bias.left_rate === "number") {
    rows.push(el("div", { className: "share pairwise-bias",
      text: `left chosen in ${Math.round(bias.left_rate * 100)}% of ${bias.n_decisive} decisive votes` }));
  }
  for (const reason of task.reasons || []) rows.push(el("p", { className: "muted pairwise-reason", text: reason }));
  box.replaceChildren(...rows);
}

/** The element showing one candidate: an image for image URLs/assets, else its text. */
function contentOf(value, label) {
  const image = typeof value === "string" && /^(https?:\/\/|\/v1\/)/i.test(value.trim()) &&
    /\.(png|jpe?g|gif|webp|bmp|avif)$|\/assets\//i.test(value.trim()) ? imageSource(value) : null;
  if (image) {
    const img = el("img", { className: "pairwise-image", alt: `${label} (image from the task)`, referrerpolicy: "no-referrer" });
    img.style.maxWidth = "100%";
    if (image.url) img.src = image.url;
    else {
      fetch(image.asset, { headers: { Authorization: `Bearer ${getKey()}` }, credentials: "omit" })
        .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`HTTP ${r.status}`))))
        .then((blob) => { img.src = URL.createObjectURL(blob); })
        .catch((e) => img.replaceWith(el("p", { className: "error", text: `Image could not be loaded (${e.message}).` })));
    }
    return img;
  }
  const text = el("div", { className: "pairwise-text" });
  text.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 1);
  text.style.whiteSpace = "pre-wrap";
  return text;
}

/** A random display order: "ab" or "ba". */
function randomOrder() {
  const bytes = new Uint8Array(1);
  crypto.getRandomValues(bytes);
  return bytes[0] % 2 === 0 ? "ab" : "ba";
}

export function mount(box, task, onReady) {
  const config = task.labels || {};
  const data = task.data || {};
  const fields = config.candidates || ["response_a", "response_b"];
  const shown = randomOrder();
  const sides = [shown[0], shown[1]]; // candidate letters, left then right
  let choice = null;
  let much = false;
  const parts = [];

  if (config.prompt && data[config.prompt] !== undefined && data[config.prompt] !== null) {
    const prompt = el("div", { className: "pairwise-prompt-text" });
    const value = data[config.prompt];
    prompt.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 1);
    prompt.style.whiteSpace = "pre-wrap";
    parts.push(el("section", { className: "field pairwise-prompt" }, el("h3", { text: "Prompt" }), prompt));
  }

  const panes = sides.map((letter, i) => {
    const field = fields[letter === "a" ? 0 : 1];
    const pane = el("div", { className: "pairwise-pane", dataset: { candidate: letter } },
      contentOf(data[field], i === 0 ? "left" : "right"));
    pane.style.height = "16rem";
    pane.style.resize = "vertical";
    pane.style.overflowY = "auto";
    pane.style.border = "1px solid #ccc";
    pane.style.padding = "0.5rem";
    return pane;
  });
  // long texts scroll together: the other pane follows at the same relative position
  let syncing = false;
  panes.forEach((pane, i) => pane.addEventListener("scroll", () => {
    if (syncing) return;
    const other = panes[1 - i];
    const range = pane.scrollHeight - pane.clientHeight;
    syncing = true;
    other.scrollTop = range > 0 ? (pane.scrollTop / range) * (other.scrollHeight - other.clientHeight) : 0;
    requestAnimationFrame(() => { syncing = false; });
  }));

  const buttons = [];
  function button(key, text, pick) {
    const b = el("button", { type: "button", className: "label pairwise-choice", dataset: { choice: pick }, "aria-pressed": "false" },
      el("kbd", { text: key }), el("span", { text: ` ${text}` }));
    b.addEventListener("click", () => select(pick));
    buttons.push(b);
    return b;
  }
  const columns = sides.map((letter, i) => el("div", { className: "pairwise-column", dataset: { side: i === 0 ? "left" : "right" } },
    el("h3", { text: i === 0 ? "Left" : "Right" }), panes[i]));
  const grid = el("div", { className: "pairwise-grid" }, ...columns);
  grid.style.display = "grid";
  grid.style.gridTemplateColumns = "1fr 1fr";
  grid.style.gap = "1rem";
  parts.push(grid);
  // the answer buttons in one row under the pair: left, tie, right
  const choices = el("div", { className: "pairwise-choices", role: "group", "aria-label": "Which is better?" },
    button("1", "Left is better", sides[0]),
    config.allow_tie !== false ? button("3", "Tie", "tie") : null,
    button("2", "Right is better", sides[1]));
  choices.style.display = "flex";
  choices.style.justifyContent = "space-between";
  choices.style.gap = "0.5rem";
  parts.push(choices);
  let strengthBox = null;
  if (config.strength) {
    strengthBox = el("label", { className: "pairwise-strength" },
      el("input", { type: "checkbox", className: "pairwise-much" }), " much better ", el("kbd", { text: "M" }));
    strengthBox.querySelector("input").addEventListener("change", (e) => { much = e.target.checked; });
    parts.push(strengthBox);
  }
  let reason = null;
  if (config.reason) {
    reason = el("textarea", { className: "pairwise-reason", rows: "2", "aria-label": "Reason (optional)", placeholder: "Why? (optional, R to type)" });
    reason.style.width = "100%";
    reason.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
      event.preventDefault();
      const submit = document.getElementById("submit");
      if (submit && !submit.disabled) submit.click();
    });
    parts.push(reason);
  }

  function select(pick) {
    choice = pick;
    for (const b of buttons) {
      const on = b.dataset.choice === pick;
      b.classList.toggle("selected", on);
      b.setAttribute("aria-pressed", String(on));
    }
    if (strengthBox) strengthBox.querySelector("input").disabled = pick === "tie";
    onReady(true);
  }

  const wrap = el("div", { className: "pairwise-widget", dataset: { shown } }, ...parts);
  wrap.style.flex = "1 1 100%"; // one item of the page's flex row of labels, full width
  box.replaceChildren(wrap);
  onReady(false);
  return {
    value() {
      if (choice === null) return null;
      const out = { choice };
      if (config.strength && choice !== "tie") out.strength = much ? "much" : "slightly";
      if (reason && reason.value.trim()) out.reason = reason.value;
      out.shown = shown;
      return out;
    },
    key(event) {
      if (event.key === "1") { select(sides[0]); return true; }
      if (event.key === "2") { select(sides[1]); return true; }
      if (event.key === "3" && config.allow_tie !== false) { select("tie"); return true; }
      if ((event.key === "m" || event.key === "M") && strengthBox && choice !== "tie") {
        const input = strengthBox.querySelector("input");
        input.checked = !input.checked;
        much = input.checked;
        return true;
      }
      if ((event.key === "r" || event.key === "R") && reason) { reason.focus(); return true; }
      return false;
    },
  };
}
