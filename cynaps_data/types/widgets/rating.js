// Workbench widget of the "rating" annotation type: a clickable scale of buttons, one per point
// (showing the point and its label when the config names it). Keys: on a scale starting at 0,
// a digit is the point itself (0–9); otherwise a digit picks by position, 1–9 the first to
// ninth point and 0 the tenth (so on 1..N scales the key is the point). ArrowRight/ArrowUp and
// ArrowLeft/ArrowDown step along the scale (for scales of more than ten points).
// Contract (cynaps_data/types/base.py, AnnotationType.widget):
// mount(box, task, onReady) -> { value(), key(event) }, and summary(box, task) for review.
import { el } from "/ui/static/common.js";

/** The review page's vote summary: a meter per voted point, and the mean. */
export function summary(box, task) {
  const counts = Object.entries(task.rating_counts || {});
  const total = counts.reduce((sum, [, n]) => sum + n, 0);
  const rows = counts.filter(([, n]) => n > 0).map(([point, n]) =>
    el("div", { className: "share" }, el("span", { className: "share-label", text: point }),
      el("meter", { min: "0", max: "1", value: String(total ? n / total : 0) }),
      el("span", { className: "share-value", text: String(n) })));
  if (typeof task.mean === "number") {
    rows.push(el("div", { className: "share rating-mean", text: `mean ${task.mean.toFixed(2)}` }));
  }
  box.replaceChildren(...rows);
}

export function mount(box, task, onReady) {
  const scale = task.labels || {};
  const lo = Number(scale.min);
  const hi = Number(scale.max);
  const names = scale.labels || {};
  const points = [];
  for (let p = lo; p <= hi; p += 1) points.push(p);
  let selected = null;

  const buttons = points.map((point, i) => {
    const name = names[String(point)];
    const button = el("button", {
      type: "button",
      className: "label rating-point",
      dataset: { point: String(point) },
      "aria-pressed": "false",
      title: name || String(point),
    }, el("span", { className: "rating-value", text: String(point) }),
    name ? el("span", { className: "rating-name", text: ` ${name}` }) : null);
    button.addEventListener("click", () => pick(i));
    return button;
  });

  function pick(index) {
    if (index < 0 || index >= points.length) return;
    selected = index;
    buttons.forEach((b, i) => {
      b.classList.toggle("selected", i === index);
      b.setAttribute("aria-pressed", String(i === index));
    });
    onReady(true);
  }

  function digitIndex(digit) {
    if (lo === 0) return digit; // the point itself
    return digit === 0 ? 9 : digit - 1; // by position: 1 = first, ..., 0 = tenth
  }

  const row = el("div", { className: "labels rating-scale", role: "group", "aria-label": "rating" }, buttons);
  box.replaceChildren(row);
  return {
    value: () => (selected === null ? null : points[selected]),
    key(event) {
      if (/^[0-9]$/.test(event.key)) {
        pick(digitIndex(Number(event.key)));
        return true;
      }
      if (event.key === "ArrowRight" || event.key === "ArrowUp") {
        pick(selected === null ? 0 : Math.min(points.length - 1, selected + 1));
        return true;
      }
      if (event.key === "ArrowLeft" || event.key === "ArrowDown") {
        pick(selected === null ? points.length - 1 : Math.max(0, selected - 1));
        return true;
      }
      return false;
    },
  };
}
