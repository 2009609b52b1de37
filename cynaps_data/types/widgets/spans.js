// Workbench widget of the "spans" annotation type: the task's text (the config's field) shown as
// text, words selected with the mouse (snapped to whole words) or the keyboard (←/→ move, Shift+←/→ grow or shrink the
// selection), a label's number (1–9) or button tags the selection, a click on a tagged span (or
// Delete over it) removes it, Enter (handled by the page) submits every span; the empty set is
// an answer. Long texts scroll inside the box.
// Contract (cynaps_data/types/base.py, AnnotationType.widget):
// mount(box, task, onReady) -> { value(), key(event) }, and summary(box, task) for review.
// The text only ever reaches the page as text nodes (textContent), never as HTML.
import { el, renderLabels } from "/ui/static/common.js";

const COLOURS = ["#ffd166", "#8ecae6", "#b5e48c", "#f4a3c0", "#cdb4db", "#ffb703", "#90e0ef", "#e9c46a", "#f6bd60"];
const WORD = /[\p{L}\p{N}]+(?:['’&.-][\p{L}\p{N}]+)*|\S/gu;

const colourOf = (labels, label) => COLOURS[Math.max(0, labels.indexOf(label)) % COLOURS.length];

function configOf(task) {
  const labels = task.labels || {};
  return Array.isArray(labels) ? { labels, field: "text", allow_overlap: false }
    : { field: "text", allow_overlap: false, ...labels };
}

function textOf(task, config) {
  const value = (task.data || {})[config.field];
  return typeof value === "string" ? value : "";
}

/** Word offsets [start, end) of ``text`` (words and single punctuation marks). */
function words(text) {
  return Array.from(text.matchAll(WORD), (m) => [m.index, m.index + m[0].length]);
}

/**
 * Offset conversion for ``text``. Spans on the wire (stored, sent, received) count Unicode code
 * points, like Python ``str`` indices and Label Studio; JavaScript strings (matchAll, slice,
 * length, DOM offsets) count UTF-16 code units, where an emoji or other astral character takes
 * two. The widget works in UTF-16 units throughout and converts only at its boundary:
 * ``unit(point)`` for spans coming in, ``point(unit)`` for spans going out.
 */
function offsets(text) {
  const units = [0]; // units[p] = the UTF-16 index of code point p (p = 0..number of points)
  for (const ch of text) units.push(units[units.length - 1] + ch.length);
  const points = new Map(units.map((u, p) => [u, p]));
  return {
    unit: (p) => units[Math.min(Math.max(0, p), units.length - 1)],
    point: (u) => points.get(u), // always a code point boundary: words come from a /u regex
  };
}

/**
 * Draw ``text`` into ``view`` with ``spans`` highlighted (label colour, title = label) and an
 * optional ``selection`` [start, end) outlined; every piece carries its offset (data-start).
 */
function paint(view, text, spans, labels, selection) {
  const cuts = new Set([0, text.length]);
  for (const s of spans) { cuts.add(s.start); cuts.add(s.end); }
  if (selection) { cuts.add(selection[0]); cuts.add(selection[1]); }
  const points = [...cuts].filter((p) => p >= 0 && p <= text.length).sort((a, b) => a - b);
  const pieces = [];
  for (let k = 0; k + 1 < points.length; k += 1) {
    const [a, b] = [points[k], points[k + 1]];
    if (b <= a) continue;
    const piece = el("span", { className: "span-piece", dataset: { start: String(a) } });
    piece.textContent = text.slice(a, b);
    const index = spans.findIndex((s) => s.start <= a && b <= s.end);
    if (index >= 0) {
      const span = spans[index];
      piece.classList.add("span-tagged");
      piece.dataset.span = String(index);
      piece.title = `${span.label} — click to remove`;
      piece.style.background = colourOf(labels, span.label);
      piece.style.borderRadius = "2px";
      piece.style.cursor = "pointer";
    }
    if (selection && selection[0] <= a && b <= selection[1]) {
      piece.classList.add("span-selected");
      piece.style.outline = "2px solid #2b59c3";
    }
    pieces.push(piece);
  }
  view.replaceChildren(...pieces);
}

function textView() {
  const view = el("div", { className: "spans-text", tabindex: "0", "aria-label": "Text to tag" });
  Object.assign(view.style, {
    whiteSpace: "pre-wrap", overflowWrap: "anywhere", lineHeight: "1.8", maxHeight: "24rem",
    overflowY: "auto", border: "1px solid #d9dde5", borderRadius: ".4rem", padding: ".6rem .8rem",
    background: "#fff", userSelect: "text",
  });
  return view;
}

/** The review page's summary: every annotator's spans side by side, then each span's support. */
export function summary(box, task) {
  const config = configOf(task);
  const text = textOf(task, config);
  const labels = config.labels || [];
  const answers = task.annotators || [];
  const votes = task.votes || [];
  const { unit } = offsets(text);
  const rows = answers.map((spans, i) => {
    const view = textView();
    view.style.maxHeight = "8rem";
    const drawn = spans.map((s) => ({ ...s, start: unit(s.start), end: unit(s.end) })); // code points in
    paint(view, text, drawn, labels, null);
    const who = votes[i] ? votes[i].annotator_id : `answer ${i + 1}`;
    return el("div", { className: "spans-answer" }, el("span", { className: "share-label", text: `${who} (${spans.length})` }), view);
  });
  const support = (task.spans || []).map((s) =>
    el("div", { className: "share" },
      el("span", { className: "share-label", text: `${s.label}: ${s.text === null || s.text === undefined ? `${s.start}–${s.end}` : s.text}` }),
      el("meter", { min: "0", max: "1", value: String(s.support) }),
      el("span", { className: "share-value", text: `${Math.round(s.support * 100)}%` })));
  box.replaceChildren(...rows, ...support);
}

export function mount(box, task, onReady) {
  const config = configOf(task);
  const labels = config.labels || [];
  const text = textOf(task, config);
  const tokens = words(text);
  const { point } = offsets(text);
  const spans = []; // in UTF-16 units, as are the tokens and the selection
  let anchor = -1; // keyboard selection: token indices
  let focus = -1;
  let selection = null; // [start, end) characters, from the keyboard or the mouse

  const view = textView();
  const bar = el("div", { className: "labels spans-labels", role: "group", "aria-label": "Span labels" });
  const note = el("p", { className: "spans-hint muted" });
  const list = el("ol", { className: "spans-list" });

  function fits(start, end) {
    return config.allow_overlap || spans.every((s) => end <= s.start || s.end <= start);
  }

  function refresh(message) {
    spans.sort((a, b) => a.start - b.start || a.end - b.end);
    paint(view, text, spans, labels, selection);
    list.replaceChildren(...spans.map((s) => el("li", {},
      el("span", { className: "spans-chip", text: s.label }), " ", text.slice(s.start, s.end))));
    for (const chip of list.querySelectorAll(".spans-chip")) {
      chip.style.background = colourOf(labels, chip.textContent);
      chip.style.padding = "0 .3rem";
      chip.style.borderRadius = "2px";
    }
    const chosen = selection ? `“${text.slice(selection[0], selection[1])}” selected` : "nothing selected";
    note.textContent = message || `${spans.length} span${spans.length === 1 ? "" : "s"}; ${chosen}. `
      + "Select with the mouse or Shift+←/→, 1–9 tags, click a span (or Delete) removes it, Enter submits.";
    onReady(true);
  }

  function fromTokens() {
    if (focus < 0 || !tokens.length) { selection = null; return; }
    const [a, b] = [Math.min(anchor, focus), Math.max(anchor, focus)];
    selection = [tokens[a][0], tokens[b][1]];
  }

  function tag(index) {
    if (index < 0 || index >= labels.length) return;
    if (!selection) { refresh("Select some text first (mouse, or Shift+←/→)."); return; }
    const [start, end] = selection;
    if (spans.some((s) => s.start === start && s.end === end && s.label === labels[index])) return;
    if (!fits(start, end)) { refresh("That overlaps a span already tagged; remove it first."); return; }
    spans.push({ start, end, label: labels[index] });
    selection = null;
    anchor = focus;
    refresh();
  }

  function remove(index) {
    spans.splice(index, 1);
    refresh();
  }

  /** The character offset of a DOM point inside the text view, or null. */
  function offsetOf(node, offset) {
    const piece = node.nodeType === Node.TEXT_NODE ? node.parentElement : node;
    if (!piece || !view.contains(piece)) return null;
    if (piece === view) {
      const child = view.childNodes[offset];
      return child ? Number(child.dataset.start) : text.length;
    }
    return Number(piece.dataset.start) + (node.nodeType === Node.TEXT_NODE ? offset : 0);
  }

  view.addEventListener("mouseup", () => {
    const sel = window.getSelection();
    if (!sel || sel.isCollapsed || !sel.rangeCount) return;
    const a = offsetOf(sel.anchorNode, sel.anchorOffset);
    const b = offsetOf(sel.focusNode, sel.focusOffset);
    if (a === null || b === null || a === b) return;
    const [start, end] = [Math.min(a, b), Math.max(a, b)];
    // snapped to whole words (a word touched by the selection is in it)
    const inside = tokens.map((t, k) => (t[0] < end && t[1] > start ? k : -1)).filter((k) => k >= 0);
    if (!inside.length) return;
    anchor = inside[0];
    focus = inside[inside.length - 1];
    fromTokens();
    sel.removeAllRanges();
    refresh();
  });
  view.addEventListener("click", (event) => {
    const piece = event.target.closest ? event.target.closest(".span-tagged") : null;
    const sel = window.getSelection();
    if (piece && (!sel || sel.isCollapsed)) remove(Number(piece.dataset.span));
  });

  renderLabels(bar, labels, tag);
  bar.querySelectorAll("button.label").forEach((button, i) => {
    const swatch = el("span", { className: "spans-swatch", "aria-hidden": "true" });
    Object.assign(swatch.style, { display: "inline-block", width: ".8rem", height: ".8rem", borderRadius: "2px", background: COLOURS[i % COLOURS.length] });
    button.prepend(swatch);
  });
  const wrap = el("div", { className: "spans-widget" }, view, bar, note, list);
  wrap.style.flex = "1 1 100%"; // one item of the page's flex row of labels, full width
  box.replaceChildren(wrap);
  refresh();
  return {
    value: () => spans.map((s) => ({ start: point(s.start), end: point(s.end), label: s.label })),
    key(event) {
      if (/^[1-9]$/.test(event.key)) { tag(Number(event.key) - 1); return true; }
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        if (!tokens.length) return true;
        const step = event.key === "ArrowRight" ? 1 : -1;
        if (focus < 0) { anchor = focus = step > 0 ? 0 : tokens.length - 1; }
        else {
          focus = Math.min(tokens.length - 1, Math.max(0, focus + step));
          if (!event.shiftKey) anchor = focus;
        }
        fromTokens();
        refresh();
        const shown = view.querySelector(".span-selected");
        if (shown && shown.scrollIntoView) shown.scrollIntoView({ block: "nearest" });
        return true;
      }
      if (event.key === "Escape") { selection = null; refresh(); return true; }
      if (event.key === "Delete" || event.key === "Backspace") {
        if (!selection) return true;
        const [start, end] = selection;
        const index = spans.findIndex((s) => s.start < end && start < s.end);
        if (index >= 0) remove(index);
        return true;
      }
      return false;
    },
  };
}
