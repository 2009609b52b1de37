// Workbench widget of the "multi_label" annotation type: one toggle per label, switched with
// 1–9 or a click; Enter (handled by the page) submits the set. The answer is ready once it has
// min_labels labels (0: the empty set is an answer) and no more than max_labels.
// Contract (cynaps_data/types/base.py, AnnotationType.widget):
// mount(box, task, onReady) -> { value(), key(event) }, and summary(box, task) for review.
import { el, renderLabels } from "/ui/static/common.js";

/** The review page's vote summary: each voted label's share of the answers, largest first. */
export function summary(box, task) {
  const shares = Object.entries(task.vote_share || {}).sort((a, b) => b[1] - a[1]);
  box.replaceChildren(...shares.map(([label, share]) =>
    el("div", { className: "share" }, el("span", { className: "share-label", text: label }),
      el("meter", { min: "0", max: "1", value: String(share) }),
      el("span", { className: "share-value", text: `${Math.round(share * 100)}%` }))));
}

export function mount(box, task, onReady) {
  const config = Array.isArray(task.labels) ? { labels: task.labels } : task.labels;
  const labels = config.labels;
  const low = config.min_labels || 0;
  const high = config.max_labels || labels.length;
  const on = new Set();
  const note = el("p", { className: "multi-label-hint muted" });

  function ready() { return on.size >= low && on.size <= high; }

  function refresh() {
    for (const button of box.querySelectorAll("button.label")) {
      const selected = on.has(Number(button.dataset.index));
      button.classList.toggle("selected", selected);
      button.setAttribute("aria-pressed", selected ? "true" : "false");
    }
    const limits = high < labels.length ? `${low}–${high}`
      : low ? `at least ${low}` : "any number, none included";
    note.textContent = `${on.size} selected (${limits}); 1–9 toggle, Enter submits`;
    onReady(ready());
  }

  function toggle(index) {
    if (index < 0 || index >= labels.length) return;
    if (on.has(index)) on.delete(index);
    else if (on.size < high) on.add(index);
    refresh();
  }

  renderLabels(box, labels, toggle);
  box.classList.add("multi-label");
  box.append(note);
  refresh();
  return {
    value: () => (ready() ? labels.filter((_, i) => on.has(i)) : null),
    key(event) {
      if (!/^[1-9]$/.test(event.key)) return false;
      toggle(Number(event.key) - 1);
      return true;
    },
  };
}
