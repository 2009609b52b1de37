// Annotator workbench: next task, answer with the type's widget, Enter submits, S skips.
import { api } from "./common.js";
import { labelText, taskQueue } from "./queue.js";

const queue = taskQueue({
  role: "annotator",
  nextPath: "/v1/annotator/next",
  progress: { done: "judgements", skipped: "skips", remaining: "remaining" },
  async commit(task, label, duration, q) {
    const path = `/v1/annotator/tasks/${task.task_id}/judgements?next=true`;
    const answer = await api("POST", path, { label, duration });
    q.status(`Saved task ${task.task_id}: ${labelText(label)}`);
    await q.render(answer.next);
    q.refreshProgress(); // not awaited: keys stay live meanwhile
  },
  keys: { s: skip },
  // the assignment expired or was taken back: show what is next instead
  async onError(e, q) { if (e.code === "not_assigned") await q.loadNext(); },
});

function skip() {
  const task = queue.state.task;
  if (!task) return;
  return queue.run(async () => {
    await api("POST", `/v1/annotator/tasks/${task.task_id}/skip`);
    queue.status(`Skipped task ${task.task_id}`);
    await queue.loadNext();
  });
}

document.getElementById("skip").addEventListener("click", () => skip());
