// Annotator workbench: next task, answer with the type's widget, Enter submits, S skips.
import { api, ApiError } from "./common.js";
import { labelText, taskQueue } from "./queue.js";

/**
 * Send an answer. Refused as not assigned (the lease ran out while the annotator worked, or
 * the task was answered in another tab), the task is asked for again: handed back to this
 * annotator, the same answer is sent once more; otherwise the answer is lost (said so) and
 * the next task is shown. Returns the submit's answer, or null when it was not saved.
 */
async function send(task, label, duration, q) {
  const path = `/v1/annotator/tasks/${task.task_id}/judgements?next=true`;
  try {
    return await api("POST", path, { label, duration });
  } catch (e) {
    if (!(e instanceof ApiError) || e.code !== "not_assigned") throw e;
    const again = await api("GET", "/v1/annotator/next");
    if (again && again.task_id === task.task_id) return api("POST", path, { label, duration });
    q.status(`Task ${task.task_id} was no longer assigned to you (the assignment expired, or ` +
      "it was answered in another tab), so this answer was not saved.");
    await q.render(again);
    q.refreshProgress();
    return null;
  }
}

const queue = taskQueue({
  role: "annotator",
  nextPath: "/v1/annotator/next",
  progress: { done: "judgements", skipped: "skips", remaining: "remaining" },
  async commit(task, label, duration, q) {
    const answer = await send(task, label, duration, q);
    if (answer === null) return;
    q.status(`Saved task ${task.task_id}: ${labelText(label)}`);
    await q.render(answer.next);
    q.refreshProgress(); // not awaited: keys stay live meanwhile
  },
  keys: { s: skip },
  // the assignment expired or was taken back: show what is next instead
  // (task_closed: it was decided while this assignment was held)
  async onError(e, q) { if (e.code === "not_assigned" || e.code === "task_closed") await q.loadNext(); },
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
