// Workbench widget of the "classification" annotation type: one button per label, picked with
// 1–9 or a click. Contract (cynaps_data/types/base.py, AnnotationType.widget):
// mount(box, task, onReady) -> { value(), key(event) }.
import { markSelected, renderLabels } from "/ui/static/common.js";

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
