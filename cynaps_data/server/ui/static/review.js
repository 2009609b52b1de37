// Expert review: a disputed task with every vote and its agreement; the expert decides.
import { api, el, setText } from "./common.js";
import { labelText, taskQueue } from "./queue.js";

// The vote summary is drawn by the type's widget module (its optional ``summary(box, task)``).
function showVotes(task, widget) {
  setText("agreement", task.agreement === null ? "–" : `${Math.round(task.agreement * 100)}%`);
  document.getElementById("votes").replaceChildren(
    ...task.votes.map((v) => el("tr", {}, el("td", { text: v.annotator_id }), el("td", { text: labelText(v.label) }))));
  const box = document.getElementById("distribution");
  if (widget.summary) widget.summary(box, task);
  else box.replaceChildren();
}

taskQueue({
  role: "expert",
  nextPath: "/v1/review/next",
  progress: { done: "judgements", remaining: "remaining" },
  renderExtra: showVotes,
  async commit(task, label, duration, q) {
    await api("POST", `/v1/review/tasks/${task.task_id}/decision`, { label, duration });
    q.status(`Decided task ${task.task_id}: ${labelText(label)}`);
    await q.loadNext();
  },
});
