// The page both workbench pages are: one task of a queue at a time, a label picked with 1–9 or a
// click, Enter commits it, every action guarded against double submission, progress counters.
import { api, markSelected, renderData, renderLabels, setText, show, signIn, typing } from "./common.js";

/** A label as text (labels of other annotation types may be objects). */
export const labelText = (label) => (typeof label === "string" ? label : JSON.stringify(label));

/**
 * Start a task-queue page for ``role`` keys.
 *
 * - ``nextPath``: GET, answers the next task or null;
 * - ``progress``: ``{elementId: field}`` of ``GET /v1/annotator/progress`` to show;
 * - ``renderExtra(task)``: page-specific parts of a shown task (votes, agreement, ...);
 * - ``commit(task, label, duration, queue)``: sends the picked label (Enter / the submit button);
 * - ``keys``: ``{key: action}`` for more shortcuts (e.g. ``s`` to skip);
 * - ``onError(error, queue)``: after an action failed and its message was shown.
 *
 * Returns the queue: ``state`` (task, selected), ``run(action)``, ``render(task)``,
 * ``loadNext()``, ``refreshProgress()`` and ``status(message)``.
 */
export function taskQueue({ role, nextPath, progress, renderExtra, commit, keys = {}, onError }) {
  const state = { task: null, selected: null, busy: false, shownAt: 0 };
  const labelsBox = () => document.getElementById("labels");
  const queue = { state, run, render, loadNext, refreshProgress, status };

  function status(message) { setText("status", message); }

  function render(task) {
    state.task = task;
    state.selected = null;
    document.getElementById("submit").disabled = true;
    if (!task) {
      show("task", false);
      show("empty", true);
      return;
    }
    show("empty", false);
    show("task", true);
    setText("project-name", task.project_name);
    setText("task-id", String(task.task_id));
    setText("instructions", task.instructions || "(no instructions)");
    if (renderExtra) renderExtra(task);
    renderData(document.getElementById("data"), task.data);
    renderLabels(labelsBox(), task.labels, pick);
    state.shownAt = performance.now();
  }

  function pick(index) {
    if (!state.task || index < 0 || index >= state.task.labels.length) return;
    state.selected = index;
    markSelected(labelsBox(), index);
    document.getElementById("submit").disabled = false;
  }

  async function refreshProgress() {
    try {
      const p = await api("GET", "/v1/annotator/progress");
      for (const [id, field] of Object.entries(progress)) setText(id, String(p[field]));
    } catch (e) { status(`Could not load progress: ${e.message}`); }
  }

  async function run(action) {
    if (state.busy) return;
    state.busy = true;
    try { await action(); } catch (e) {
      status(e.message);
      if (onError) await onError(e, queue);
    } finally { state.busy = false; }
  }

  async function loadNext() {
    render(await api("GET", nextPath));
    refreshProgress(); // not awaited: keys stay live meanwhile
  }

  function commitPicked() {
    if (!state.task || state.selected === null) return;
    const task = state.task;
    const label = task.labels[state.selected];
    const duration = Math.round(performance.now() - state.shownAt) / 1000;
    return run(() => commit(task, label, duration, queue));
  }

  document.addEventListener("keydown", (event) => {
    if (typing(event) || event.altKey || event.ctrlKey || event.metaKey || !state.task) return;
    const name = event.key.toLowerCase();
    const extra = Object.hasOwn(keys, name) ? keys[name] : null;
    if (/^[1-9]$/.test(event.key)) { pick(Number(event.key) - 1); event.preventDefault(); }
    else if (event.key === "Enter") { event.preventDefault(); commitPicked(); }
    else if (extra) { event.preventDefault(); extra(); }
  });
  document.getElementById("submit").addEventListener("click", () => commitPicked());
  document.getElementById("refresh").addEventListener("click", () => run(loadNext));

  signIn([role], () => run(loadNext));
  return queue;
}
