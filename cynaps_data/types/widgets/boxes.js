// Workbench widget of the "boxes" annotation type: draw labelled bounding boxes on the task's
// image. Drag on the image draws a box with the current label; click a box to select it, drag
// it to move, drag a corner handle to resize. Keys: 1–9 (0 = tenth) pick the label — of the
// selected box (relabel) and of the next boxes drawn; Delete/Backspace removes the selected
// box; Escape deselects; + / - zoom in and out (the stage scrolls), Enter submits (the page's).
// Boxes are kept in pixels of the image's original size, whatever its size on screen.
// Contract (cynaps_data/types/base.py, AnnotationType.widget):
// mount(box, task, onReady) -> { value(), key(event) }, and summary(box, task) for review.
// Task data reaches the page only through DOM properties (src, textContent), never as HTML.
import { el, getKey, imageSource } from "/ui/static/common.js";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
  "#9a6324", "#469990", "#808000"];
const DASHES = ["", "6 3", "2 3", "10 4 2 4", "1 5"];
const MIN_DRAG = 3; // screen pixels: a shorter drag is a click, not a box

const colour = (labels, label) => PALETTE[Math.max(0, labels.indexOf(label)) % PALETTE.length];
const round2 = (v) => Math.round(v * 100) / 100;

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/** Load the task's image into ``img`` (the platform's assets with the session key, through a
 * blob: URL; other http(s) URLs directly); resolves with its natural size. */
function loadImage(img, value) {
  const source = imageSource(value);
  if (!source) return Promise.reject(new Error("the task has no image in this field"));
  const loaded = new Promise((resolve, reject) => {
    img.addEventListener("load", () => resolve({ width: img.naturalWidth, height: img.naturalHeight }), { once: true });
    img.addEventListener("error", () => reject(new Error("the image could not be decoded")), { once: true });
  });
  if (source.url) img.src = source.url;
  else {
    fetch(source.asset, { headers: { Authorization: `Bearer ${getKey()}` }, credentials: "omit" })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((blob) => { img.src = URL.createObjectURL(blob); })
      .catch((e) => img.dispatchEvent(new ErrorEvent("error", { message: e.message })));
  }
  return loaded;
}

/** The original size the platform knows (image reference or the data's width/height). */
function knownSize(data, field) {
  for (const holder of [data[field], data]) {
    if (holder && typeof holder === "object" && holder.width > 0 && holder.height > 0) {
      return { width: Number(holder.width), height: Number(holder.height) };
    }
  }
  return null;
}

/** A stage: the image at ``scale`` with an SVG overlay of the same size, in a scrolling box. */
function stage(field) {
  const img = el("img", { className: "boxes-image", alt: `${field} (image from the task)`, referrerpolicy: "no-referrer", draggable: "false" });
  const overlay = svg("svg", { class: "boxes-overlay", role: "img", "aria-label": "boxes" });
  const inner = el("div", { className: "boxes-inner" }, img, overlay);
  const view = el("div", { className: "boxes-stage" }, inner);
  inner.style.position = "relative";
  inner.style.display = "inline-block";
  img.style.display = "block";
  img.style.userSelect = "none";
  overlay.style.position = "absolute";
  overlay.style.left = "0";
  overlay.style.top = "0";
  overlay.style.touchAction = "none";
  view.style.overflow = "auto";
  view.style.maxHeight = "70vh";
  view.style.border = "1px solid #ccc";
  return { img, overlay, inner, view };
}

function drawRect(parent, b, scale, stroke, dash, width = 2) {
  const rect = svg("rect", {
    x: b.x * scale, y: b.y * scale, width: b.width * scale, height: b.height * scale,
    fill: stroke, "fill-opacity": "0.08", stroke, "stroke-width": width,
  });
  if (dash) rect.setAttribute("stroke-dasharray", dash);
  parent.append(rect);
  return rect;
}

function drawTag(parent, b, scale, stroke, text) {
  const tag = svg("text", { x: b.x * scale + 3, y: Math.max(12, b.y * scale - 3), fill: stroke, "font-size": "12", "font-family": "sans-serif" });
  tag.textContent = text;
  parent.append(tag);
}

/** The review page: every annotator's boxes over the image (one dash pattern per annotator,
 * colour by label), with a legend; the merged boxes are pre-drawn in the answer widget. */
export function summary(box, task) {
  const config = task.labels || {};
  const labels = config.labels || [];
  const field = config.field || "image";
  const data = task.data || {};
  const votes = task.votes || [];
  const { img, overlay, inner, view } = stage(field);
  const legend = el("ul", { className: "boxes-legend" });
  votes.forEach((v, i) => {
    const n = Array.isArray(v.label) ? v.label.length : 0;
    legend.append(el("li", { text: `${DASHES[i % DASHES.length] ? "dashed " + (i + 1) : "solid"} — ${v.annotator_id}: ${n} box${n === 1 ? "" : "es"}` }));
  });
  const stats = el("p", { className: "muted", text: `F1 ${fmt(task.f1)}, mean IoU ${fmt(task.mean_iou)}, merged ${(task.merged || []).length} box(es)` });
  box.replaceChildren(el("div", { className: "boxes-summary" }, view, legend, stats));
  loadImage(img, data[field]).then((natural) => {
    const size = knownSize(data, field) || natural;
    const scale = Math.min(1, 560 / size.width);
    img.style.width = `${size.width * scale}px`;
    overlay.setAttribute("width", size.width * scale);
    overlay.setAttribute("height", size.height * scale);
    inner.dataset.scale = String(scale);
    votes.forEach((v, i) => {
      for (const b of Array.isArray(v.label) ? v.label : []) {
        const stroke = colour(labels, b.label);
        const rect = drawRect(overlay, b, scale, stroke, DASHES[i % DASHES.length]);
        rect.classList.add("vote-box");
        rect.dataset.annotator = String(v.annotator_id);
        drawTag(overlay, b, scale, stroke, `${b.label} (${i + 1})`);
      }
    });
  }).catch((e) => view.replaceChildren(el("p", { className: "error", text: `Image could not be loaded (${e.message}).` })));
}

function fmt(x) { return typeof x === "number" ? x.toFixed(2) : "–"; }

export function mount(box, task, onReady) {
  const config = task.labels || {};
  const labels = config.labels || [];
  const field = config.field || "image";
  const minSize = Number(config.min_size) || 0;
  const data = task.data || {};
  let boxes = Array.isArray(task.merged) ? task.merged.map((b) => ({ x: b.x, y: b.y, width: b.width, height: b.height, label: b.label })) : [];
  let current = 0; // the label index of the next box drawn
  let selected = null; // index into boxes
  let scale = 1;
  let fit = 1;
  let size = null; // original size
  let gesture = null;

  const { img, overlay, inner, view } = stage(field);
  const buttons = labels.map((label, i) => {
    const b = el("button", { type: "button", className: "label boxes-label", "aria-pressed": "false", dataset: { index: String(i) } },
      i < 10 ? el("kbd", { text: String((i + 1) % 10) }) : null, el("span", { text: label }));
    b.style.borderLeft = `0.5rem solid ${PALETTE[i % PALETTE.length]}`;
    b.addEventListener("click", () => pick(i));
    return b;
  });
  const zoomIn = el("button", { type: "button", className: "boxes-zoom-in", title: "Zoom in (+)", text: "+" });
  const zoomOut = el("button", { type: "button", className: "boxes-zoom-out", title: "Zoom out (-)", text: "−" });
  const remove = el("button", { type: "button", className: "boxes-delete", title: "Delete the selected box (Delete)", text: "Delete box" });
  const count = el("span", { className: "muted boxes-count" });
  zoomIn.addEventListener("click", () => zoom(1.25));
  zoomOut.addEventListener("click", () => zoom(1 / 1.25));
  remove.addEventListener("click", () => removeSelected());
  const hint = el("p", { className: "muted hint", text: "Drag on the image to draw a box. Keys: 1–9 label (the selected box, and the next ones), Delete removes, + / - zoom, Enter submits (no box = nothing to box)." });
  const wrap = el("div", { className: "boxes-widget" },
    el("div", { className: "labels boxes-labels", role: "group", "aria-label": "Box label" }, buttons),
    el("div", { className: "boxes-tools" }, zoomOut, zoomIn, remove, count), view, hint);
  wrap.style.flex = "1 1 100%";
  box.replaceChildren(wrap);
  onReady(false);

  function pick(i) {
    if (i < 0 || i >= labels.length) return;
    current = i;
    if (selected !== null) boxes[selected].label = labels[i];
    buttons.forEach((b, j) => { b.classList.toggle("selected", j === i); b.setAttribute("aria-pressed", String(j === i)); });
    render();
  }

  function zoom(factor) {
    if (!size) return;
    scale = Math.min(8, Math.max(fit / 4, scale * factor));
    layout();
  }

  function layout() {
    img.style.width = `${size.width * scale}px`;
    img.style.height = `${size.height * scale}px`;
    overlay.setAttribute("width", size.width * scale);
    overlay.setAttribute("height", size.height * scale);
    inner.dataset.scale = String(scale);
    render();
  }

  function removeSelected() {
    if (selected === null) return false;
    boxes.splice(selected, 1);
    selected = null;
    render();
    return true;
  }

  function render() {
    overlay.replaceChildren();
    count.textContent = `${boxes.length} box${boxes.length === 1 ? "" : "es"}`;
    boxes.forEach((b, i) => {
      const stroke = colour(labels, b.label);
      const rect = drawRect(overlay, b, scale, stroke, "", i === selected ? 3 : 2);
      rect.classList.add("box");
      rect.dataset.index = String(i);
      rect.dataset.label = b.label;
      rect.style.cursor = "move";
      drawTag(overlay, b, scale, stroke, b.label);
      if (i === selected) {
        for (const [cx, cy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
          const handle = svg("rect", {
            x: (b.x + cx * b.width) * scale - 5, y: (b.y + cy * b.height) * scale - 5, width: 10, height: 10,
            fill: "#fff", stroke, "stroke-width": 2, class: "handle",
          });
          handle.dataset.corner = `${cx}${cy}`;
          handle.style.cursor = cx === cy ? "nwse-resize" : "nesw-resize";
          overlay.append(handle);
        }
      }
    });
  }

  /** The pointer in original image pixels, clamped to the image. */
  function at(event) {
    const r = overlay.getBoundingClientRect();
    return {
      x: Math.min(size.width, Math.max(0, (event.clientX - r.left) / scale)),
      y: Math.min(size.height, Math.max(0, (event.clientY - r.top) / scale)),
    };
  }

  overlay.addEventListener("pointerdown", (event) => {
    if (!size || event.button !== 0) return;
    event.preventDefault();
    overlay.setPointerCapture(event.pointerId);
    const p = at(event);
    const target = event.target;
    if (target.dataset && target.dataset.corner && selected !== null) {
      const b = boxes[selected];
      const [cx, cy] = target.dataset.corner.split("").map(Number);
      // the opposite corner stays put
      gesture = { kind: "resize", anchor: { x: cx ? b.x : b.x + b.width, y: cy ? b.y : b.y + b.height } };
    } else if (target.dataset && target.dataset.index !== undefined) {
      selected = Number(target.dataset.index);
      const b = boxes[selected];
      gesture = { kind: "move", start: p, origin: { x: b.x, y: b.y } };
      current = Math.max(0, labels.indexOf(b.label));
      buttons.forEach((btn, j) => btn.classList.toggle("selected", j === current));
      render();
    } else {
      selected = null;
      gesture = { kind: "draw", anchor: p, screen: { x: event.clientX, y: event.clientY } };
      render();
    }
  });

  overlay.addEventListener("pointermove", (event) => {
    if (!gesture) return;
    const p = at(event);
    if (gesture.kind === "move") {
      const b = boxes[selected];
      b.x = Math.min(size.width - b.width, Math.max(0, gesture.origin.x + p.x - gesture.start.x));
      b.y = Math.min(size.height - b.height, Math.max(0, gesture.origin.y + p.y - gesture.start.y));
      render();
    } else {
      const a = gesture.anchor;
      const rect = { x: Math.min(a.x, p.x), y: Math.min(a.y, p.y), width: Math.abs(p.x - a.x), height: Math.abs(p.y - a.y) };
      if (gesture.kind === "resize") Object.assign(boxes[selected], rect);
      else gesture.rect = rect;
      render();
      if (gesture.kind === "draw") {
        const ghost = drawRect(overlay, rect, scale, PALETTE[current % PALETTE.length], "4 2");
        ghost.classList.add("ghost");
      }
    }
  });

  function finish(event) {
    if (!gesture) return;
    const g = gesture;
    gesture = null;
    if (g.kind === "draw" && g.rect) {
      const far = Math.max(Math.abs(event.clientX - g.screen.x), Math.abs(event.clientY - g.screen.y));
      if (far >= MIN_DRAG && g.rect.width > 0 && g.rect.height > 0) {
        const r = g.rect;
        boxes.push({ x: r.x, y: r.y, width: Math.max(r.width, minSize), height: Math.max(r.height, minSize), label: labels[current] });
        selected = boxes.length - 1;
      }
    }
    if (g.kind === "resize" && selected !== null) {
      const b = boxes[selected];
      b.width = Math.max(b.width, minSize, 1 / scale);
      b.height = Math.max(b.height, minSize, 1 / scale);
    }
    render();
  }
  overlay.addEventListener("pointerup", finish);
  overlay.addEventListener("pointercancel", finish);

  loadImage(img, data[field]).then((natural) => {
    size = knownSize(data, field) || natural; // the platform's size is the one boxes refer to
    const room = Math.max(200, (box.clientWidth || 800) - 4);
    fit = Math.min(1, room / size.width);
    scale = fit;
    layout();
    pick(current);
    onReady(true); // no box is an answer too ("nothing to box")
  }).catch((e) => {
    view.replaceChildren(el("p", { className: "error", text: `Image could not be loaded (${e.message}).` }));
    onReady(false);
  });

  return {
    value: () => (size ? boxes.map((b) => {
      const x = round2(Math.max(0, b.x));
      const y = round2(Math.max(0, b.y));
      return {
        x, y,
        width: round2(Math.min(b.width, size.width - x)),
        height: round2(Math.min(b.height, size.height - y)),
        label: b.label,
      };
    }) : null),
    key(event) {
      if (/^[0-9]$/.test(event.key)) {
        const digit = Number(event.key);
        pick(digit === 0 ? 9 : digit - 1);
        return true;
      }
      if (event.key === "Delete" || event.key === "Backspace") return removeSelected();
      if (event.key === "Escape") { selected = null; render(); return true; }
      if (event.key === "+" || event.key === "=") { zoom(1.25); return true; }
      if (event.key === "-" || event.key === "_") { zoom(1 / 1.25); return true; }
      return false;
    },
  };
}
