// Workbench widget of the "classification" annotation type: one button per label, picked with
// 1–9 or a click. Contract (cynaps_data/types/base.py, AnnotationType.widget):
// mount(box, task, onReady) -> { value(), key(event) }, and summary(box, task) for review.
import { el, markSelected, renderLabels } from "/ui/static/common.js";

/** The review page's vote summary: each voted label's share, largest first. */
export function summary(box, task) {
  const shares = Object.entries(task.vote_distribution || {}).sort((a, b) => b[1] - a[1]);
  box.replaceChildren(...shares.map(([label, share]) =>
    el("div", { className: "share" }, el("span", { className: "share-label", text: label }),
      el("meter", { min: "0", max: "1", value: String(share) }),
      el("span", { className: "share-value", text: `${Math.round(share * 100)}%` }))));
}

export function mount(box, task, onReady) {
  let selected = null;
  const labels = task.labels;

  function pick(index) {
    if (index < 0 || index >= labels.length) return;
    selected = index;
    markSelected(box, index);
    onReady(true);
  }

  renderLabels(box, labels, pick);
  return {
    value: () => (selected === null ? null : labels[selected]),
    key(event) {
      if (!/^[1-9]$/.test(event.key)) return false;
      pick(Number(event.key) - 1);
      return true;
    },
  };
}
