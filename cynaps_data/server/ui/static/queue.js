// The page both workbench pages are: one task of a queue at a time, answered with the widget of
// its annotation type (loaded from /ui/widgets/<type>.js), Enter commits the answer, every action
// guarded against double submission, progress counters.
import { api, renderData, setText, show, signIn, typing } from "./common.js";

/** The widget module of an annotation type, loaded once per page. */
const widgets = new Map();
function widgetOf(type) {
  if (!widgets.has(type)) widgets.set(type, import(`/ui/widgets/${encodeURIComponent(type)}.js`));
  return widgets.get(type);
}

/** A label as text (labels of other annotation types may be objects). */
export const labelText = (label) => (typeof label === "string" ? label : JSON.stringify(label));

/**
 * Start a task-queue page for ``role`` keys.
 *
 * - ``nextPath``: GET, answers the next task or null;
 * - ``progress``: ``{elementId: field}`` of ``GET /v1/annotator/progress`` to show;
 * - ``renderExtra(task, widget)``: page-specific parts of a shown task (votes, agreement, ...;
 *   ``widget`` is the type's widget module);
 * - ``commit(task, label, duration, queue)``: sends the widget's answer (Enter / the submit button);
 * - ``keys``: ``{key: action}`` for more shortcuts (e.g. ``s`` to skip);
 * - ``onError(error, queue)``: after an action failed and its message was shown.
 *
 * Returns the queue: ``state`` (task, widget), ``run(action)``, ``render(task)`` (async),
 * ``loadNext()``, ``refreshProgress()`` and ``status(message)``.
 */
export function taskQueue({ role, nextPath, progress, renderExtra, commit, keys = {}, onError }) {
  const state = { task: null, widget: null, busy: false, shownAt: 0 };
  const labelsBox = () => document.getElementById("labels");
  const queue = { state, run, render, loadNext, refreshProgress, status };

  function status(message) { setText("status", message); }

  async function render(task) {
    state.task = task;
    state.widget = null;
    document.getElementById("submit").disabled = true;
    if (!task) {
      show("task", false);
      show("empty", true);
      return;
    }
    const widget = await widgetOf(task.annotation_type);
    if (state.task !== task) return; // another task was shown meanwhile
    show("empty", false);
    show("task", true);
    setText("project-name", task.project_name);
    setText("task-id", String(task.task_id));
    setText("instructions", task.instructions || "(no instructions)");
    if (renderExtra) renderExtra(task, widget);
    renderData(document.getElementById("data"), task.data);
    // a widget that draws the task data itself (e.g. a pair in randomised order) hides the box
    document.getElementById("data").hidden = Boolean(widget.ownsData);
    state.widget = widget.mount(labelsBox(), task, (ready) => {
      document.getElementById("submit").disabled = !ready;
    });
    state.shownAt = performance.now();
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
    await render(await api("GET", nextPath));
    refreshProgress(); // not awaited: keys stay live meanwhile
  }

  function commitPicked() {
    if (!state.task || !state.widget) return;
    const task = state.task;
    const label = state.widget.value();
    if (label === null || label === undefined) return;
    const duration = Math.round(performance.now() - state.shownAt) / 1000;
    return run(() => commit(task, label, duration, queue));
  }

  document.addEventListener("keydown", (event) => {
    if (typing(event) || event.altKey || event.ctrlKey || event.metaKey || !state.task) return;
    const name = event.key.toLowerCase();
    const extra = Object.hasOwn(keys, name) ? keys[name] : null;
    if (event.key === "Enter") { event.preventDefault(); commitPicked(); }
    else if (state.widget && state.widget.key(event)) event.preventDefault();
    else if (extra) { event.preventDefault(); extra(); }
  });
  document.getElementById("submit").addEventListener("click", () => commitPicked());
  document.getElementById("refresh").addEventListener("click", () => run(loadNext));

  signIn([role], () => run(loadNext));
  return queue;
}
