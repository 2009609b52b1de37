// Expert review: a disputed task with every vote and its agreement; the expert decides.
import { api, el, markSelected, renderData, renderLabels, setText, show, signIn, typing } from "./common.js";

const state = { task: null, selected: null, busy: false, shownAt: 0 };
const labelsBox = () => document.getElementById("labels");
const asText = (label) => (typeof label === "string" ? label : JSON.stringify(label));

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
  setText("agreement", task.agreement === null ? "–" : `${Math.round(task.agreement * 100)}%`);
  document.getElementById("votes").replaceChildren(
    ...task.votes.map((v) => el("tr", {}, el("td", { text: v.annotator_id }), el("td", { text: asText(v.label) }))));
  const shares = Object.entries(task.vote_distribution).sort((a, b) => b[1] - a[1]);
  document.getElementById("distribution").replaceChildren(...shares.map(([label, share]) =>
    el("div", { className: "share" }, el("span", { className: "share-label", text: label }),
      el("meter", { min: "0", max: "1", value: String(share) }),
      el("span", { className: "share-value", text: `${Math.round(share * 100)}%` }))));
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
    setText("remaining", String(p.remaining));
  } catch (e) { status(`Could not load progress: ${e.message}`); }
}

async function run(action) {
  if (state.busy) return;
  state.busy = true;
  try { await action(); } catch (e) { status(e.message); } finally { state.busy = false; }
}

async function loadNext() {
  render(await api("GET", "/v1/review/next"));
  refreshProgress(); // not awaited: keys stay live meanwhile
}

function decide() {
  if (!state.task || state.selected === null) return;
  const task = state.task;
  const label = task.labels[state.selected];
  const duration = Math.round(performance.now() - state.shownAt) / 1000;
  return run(async () => {
    await api("POST", `/v1/review/tasks/${task.task_id}/decision`, { label, duration });
    status(`Decided task ${task.task_id}: ${asText(label)}`);
    await loadNext();
  });
}

document.addEventListener("keydown", (event) => {
  if (typing(event) || event.altKey || event.ctrlKey || event.metaKey || !state.task) return;
  if (/^[1-9]$/.test(event.key)) { pick(Number(event.key) - 1); event.preventDefault(); }
  else if (event.key === "Enter") { event.preventDefault(); decide(); }
});
document.getElementById("submit").addEventListener("click", () => decide());
document.getElementById("refresh").addEventListener("click", () => run(loadNext));

signIn(["expert"], () => run(loadNext));
