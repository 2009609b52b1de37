// Annotator workbench: next task, label with 1–9, Enter submits, S skips.
import { api, el, markSelected, renderData, renderLabels, setText, show, signIn, typing } from "./common.js";

const state = { task: null, selected: null, busy: false, shownAt: 0 };
const labelsBox = () => document.getElementById("labels");

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
    setText("done", String(p.judgements));
    setText("skipped", String(p.skips));
    setText("remaining", String(p.remaining));
  } catch (e) { status(`Could not load progress: ${e.message}`); }
}

async function run(action) {
  if (state.busy) return;
  state.busy = true;
  try { await action(); } catch (e) {
    status(e.message);
    if (e.code === "not_assigned") await loadNext();
  } finally { state.busy = false; }
}

async function loadNext() {
  render(await api("GET", "/v1/annotator/next"));
  refreshProgress(); // not awaited: keys stay live meanwhile
}

function submit() {
  if (!state.task || state.selected === null) return;
  const task = state.task;
  const label = task.labels[state.selected];
  const duration = Math.round(performance.now() - state.shownAt) / 1000;
  return run(async () => {
    const answer = await api("POST", `/v1/annotator/tasks/${task.task_id}/judgements?next=true`, { label, duration });
    status(`Saved task ${task.task_id}: ${typeof label === "string" ? label : JSON.stringify(label)}`);
    render(answer.next);
    refreshProgress(); // not awaited: keys stay live meanwhile
  });
}

function skip() {
  if (!state.task) return;
  const task = state.task;
  return run(async () => {
    await api("POST", `/v1/annotator/tasks/${task.task_id}/skip`);
    status(`Skipped task ${task.task_id}`);
    await loadNext();
  });
}

document.addEventListener("keydown", (event) => {
  if (typing(event) || event.altKey || event.ctrlKey || event.metaKey || !state.task) return;
  if (/^[1-9]$/.test(event.key)) { pick(Number(event.key) - 1); event.preventDefault(); }
  else if (event.key === "Enter") { event.preventDefault(); submit(); }
  else if (event.key === "s" || event.key === "S") { event.preventDefault(); skip(); }
});
document.getElementById("submit").addEventListener("click", () => submit());
document.getElementById("skip").addEventListener("click", () => skip());
document.getElementById("refresh").addEventListener("click", () => run(loadNext));

signIn(["annotator"], () => run(loadNext));
