// Expert review: a disputed task with every vote and its agreement; the expert decides.
import { api, el, setText } from "./common.js";
import { labelText, taskQueue } from "./queue.js";

/** One vote as text: the widget's own wording when it has one (e.g. ranked candidates by
 * content), else the label; an empty answer is named, not a blank cell. */
function voteText(label, task, widget) {
  const text = widget.voteText ? widget.voteText(label, task) : labelText(label);
  return text === "" ? "(empty answer)" : text;
}

// The vote summary is drawn by the type's widget module (its optional ``summary(box, task)``).
function showVotes(task, widget) {
  setText("agreement", task.agreement === null ? "–" : `${Math.round(task.agreement * 100)}%`);
  document.getElementById("votes").replaceChildren(
    ...task.votes.map((v) => el("tr", {}, el("td", { text: v.annotator_id }), el("td", { text: voteText(v.label, task, widget) }))));
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
  // decided meanwhile (another tab, another expert) or gone: its message stays, the next is shown
  async onError(e, q) {
    if (["not_disputed", "review_taken"].includes(e.code) || e.status === 404) await q.loadNext();
  },
});
