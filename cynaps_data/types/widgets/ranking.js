// Workbench widget of the "ranking" annotation type: the prompt, then the candidates as a list
// in an order shuffled for every showing (recorded as the answer's "shown"). Rank them by
// dragging, or with the keys: a digit 1–9 appends the candidate shown at that number to the
// ranking (best first), Backspace takes the last one back, 0 clears. The answer is complete
// when every candidate has a place (the last one is placed by itself). Enter submits.
// Contract (cynaps_data/types/base.py, AnnotationType.widget):
// mount(box, task, onReady) -> { value(), key(event) }, and summary(box, task) for review.
// Task data only ever reaches the page through DOM properties (textContent), never HTML.
import { el } from "/ui/static/common.js";

export const ownsData = true;

const SHOW_KEYS = ["text", "body", "title", "content"];

/** A candidate as a short line of text (the review page names candidates by their content:
 * positions mean nothing to an expert who sees them shuffled). */
function shortText(value) {
  const text = textOf(value).replace(/\s+/g, " ").trim();
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}

/** The review page's vote summary: each candidate's mean rank, and Kendall's W. */
export function summary(box, task) {
  const ranks = task.mean_ranks || [];
  const items = candidates(task);
  const rows = ranks.map((rank, i) => el("div", { className: "share" },
    el("span", { className: "share-label", text: i < items.length ? shortText(items[i]) : `#${i + 1}` }),
    el("span", { className: "share-value", text: `mean rank ${rank.toFixed(2)}` })));
  if (typeof task.kendall_w === "number") rows.push(el("div", { className: "share ranking-w", text: `Kendall's W ${task.kendall_w.toFixed(2)}` }));
  box.replaceChildren(...rows);
}

function candidates(task) {
  const config = task.labels || {};
  const data = task.data || {};
  const spec = config.candidates;
  if (typeof spec === "string") {
    const items = Array.isArray(data[spec]) ? data[spec] : [];
    return items.map((item) => {
      if (item && typeof item === "object" && !Array.isArray(item)) {
        const key = SHOW_KEYS.find((k) => Object.hasOwn(item, k));
        return key ? item[key] : item;
      }
      return item;
    });
  }
  return (spec || []).map((field) => data[field]);
}

/** The review page's text of one vote: its candidates best first. */
export function voteText(label, task) {
  const items = candidates(task);
  const order = label && Array.isArray(label.order) ? label.order : [];
  return order.map((pos) => (pos in items ? shortText(items[pos]) : `#${pos}`)).join(" > ");
}

function textOf(value) { return typeof value === "string" ? value : JSON.stringify(value, null, 1); }

export function mount(box, task, onReady) {
  const config = task.labels || {};
  const data = task.data || {};
  const items = candidates(task);
  const n = items.length;
  const shown = [...Array(n).keys()];
  const random = new Uint32Array(n);
  crypto.getRandomValues(random);
  for (let i = n - 1; i > 0; i -= 1) { const j = random[i] % (i + 1); [shown[i], shown[j]] = [shown[j], shown[i]]; }
  let ranked = []; // candidate positions, best first

  const parts = [];
  if (config.prompt && data[config.prompt] !== undefined && data[config.prompt] !== null) {
    const prompt = el("div", { className: "ranking-prompt-text", text: textOf(data[config.prompt]) });
    prompt.style.whiteSpace = "pre-wrap";
    parts.push(el("section", { className: "field ranking-prompt" }, el("h3", { text: "Prompt" }), prompt));
  }
  const list = el("ol", { className: "ranking-list", "aria-label": "Candidates, drag or press their numbers best first" });
  let dragged = null;
  const rows = shown.map((pos, i) => {
    const row = el("li", { className: "ranking-item", draggable: "true", dataset: { candidate: String(pos) } },
      el("kbd", { text: String(i + 1) }), el("span", { className: "ranking-place" }),
      el("div", { className: "ranking-text", text: textOf(items[pos]) }));
    row.querySelector(".ranking-text").style.whiteSpace = "pre-wrap";
    row.style.border = "1px solid #ccc";
    row.style.padding = "0.4rem";
    row.style.margin = "0.3rem 0";
    row.style.cursor = "grab";
    row.addEventListener("click", () => place(pos));
    row.addEventListener("dragstart", (e) => { dragged = pos; e.dataTransfer.effectAllowed = "move"; });
    row.addEventListener("dragover", (e) => e.preventDefault());
    row.addEventListener("drop", (e) => { e.preventDefault(); if (dragged !== null) dropOn(dragged, pos); dragged = null; });
    return row;
  });
  list.append(...rows);
  parts.push(list);
  parts.push(el("p", { className: "muted hint", text: "Press the numbers best first (Backspace undoes, 0 clears), or drag to reorder; Enter submits." }));

  /** Dragging a candidate onto another: the displayed list becomes the ranking. */
  function dropOn(moving, target) {
    const current = ranked.length === n ? [...ranked] : [...rows.map((r) => Number(r.dataset.candidate))];
    const from = current.indexOf(moving);
    current.splice(from, 1);
    current.splice(current.indexOf(target) + (from <= current.indexOf(target) ? 1 : 0), 0, moving);
    ranked = current;
    redraw();
  }

  function place(pos) {
    if (ranked.includes(pos)) return;
    ranked.push(pos);
    if (ranked.length === n - 1) ranked.push(shown.find((p) => !ranked.includes(p)));
    redraw();
  }

  function redraw() {
    rows.forEach((row) => {
      const pos = Number(row.dataset.candidate);
      const at = ranked.indexOf(pos);
      row.querySelector(".ranking-place").textContent = at >= 0 ? ` ${at + 1}. ` : " ";
      row.classList.toggle("selected", at >= 0);
      row.setAttribute("aria-current", at >= 0 ? "true" : "false");
    });
    if (ranked.length === n) { // show the list in ranked order
      const byPos = new Map(rows.map((r) => [Number(r.dataset.candidate), r]));
      list.replaceChildren(...ranked.map((p) => byPos.get(p)));
    }
    onReady(ranked.length === n);
  }

  const wrap = el("div", { className: "ranking-widget" }, ...parts);
  wrap.style.flex = "1 1 100%";
  box.replaceChildren(wrap);
  onReady(false);
  return {
    value: () => (ranked.length === n ? { order: [...ranked], shown: [...shown] } : null),
    key(event) {
      if (/^[1-9]$/.test(event.key)) {
        const i = Number(event.key) - 1;
        if (i < n) place(shown[i]);
        return true;
      }
      if (event.key === "Backspace") {
        if (ranked.length === n) ranked.pop(); // the self-placed last one goes too
        ranked.pop();
        const byShown = new Map(rows.map((r) => [Number(r.dataset.candidate), r]));
        list.replaceChildren(...shown.map((p) => byShown.get(p)));
        redraw();
        return true;
      }
      if (event.key === "0") {
        ranked = [];
        const byShown = new Map(rows.map((r) => [Number(r.dataset.candidate), r]));
        list.replaceChildren(...shown.map((p) => byShown.get(p)));
        redraw();
        return true;
      }
      return false;
    },
  };
}
