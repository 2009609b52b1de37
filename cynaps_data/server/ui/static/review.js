// Expert review: a disputed task with every vote and its agreement; the expert decides.
import { api, el, setText } from "./common.js";
import { labelText, taskQueue } from "./queue.js";

function showVotes(task) {
  setText("agreement", task.agreement === null ? "–" : `${Math.round(task.agreement * 100)}%`);
  document.getElementById("votes").replaceChildren(
    ...task.votes.map((v) => el("tr", {}, el("td", { text: v.annotator_id }), el("td", { text: labelText(v.label) }))));
  const shares = Object.entries(task.vote_distribution).sort((a, b) => b[1] - a[1]);
  document.getElementById("distribution").replaceChildren(...shares.map(([label, share]) =>
    el("div", { className: "share" }, el("span", { className: "share-label", text: label }),
      el("meter", { min: "0", max: "1", value: String(share) }),
      el("span", { className: "share-value", text: `${Math.round(share * 100)}%` }))));
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
