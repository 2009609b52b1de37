// Read-only project dashboard for the customer: progress, agreement histogram, annotators,
// judgements per task and why each stopped.
import { api, el, setText, show, signIn } from "./common.js";

const select = () => document.getElementById("project");
let timer = null;

async function loadProjects() {
  const list = await api("GET", "/v1/projects?limit=1000");
  select().replaceChildren(...list.data.map((p) => el("option", { value: p.id, text: `${p.name} (${p.state})` })));
  if (list.data.length) await loadDashboard();
  else setText("status", "No projects yet.");
}

async function loadDashboard() {
  const id = select().value;
  if (!id) return;
  try {
    const d = await api("GET", `/v1/projects/${encodeURIComponent(id)}/dashboard`);
    const s = d.status;
    show("overview", true);
    document.getElementById("progress").value = s.progress;
    setText("pct", String(s.progress));
    setText("completed", String(s.completed));
    setText("total", String(s.total));
    setText("state", s.state);
    setText("judgements", String(s.judgements));
    setText("pending", String(s.pending));
    setText("disputed", String(s.disputed));
    const h = d.agreement_histogram;
    const top = Math.max(1, ...h.counts);
    document.getElementById("histogram").replaceChildren(...h.counts.map((n, i) => {
      const bar = el("div", { className: "bar", title: `${Math.round(h.edges[i] * 100)}–${Math.round(h.edges[i + 1] * 100)}%: ${n} tasks` },
        el("span", { className: "bar-count", text: String(n) }));
      bar.style.height = `${Math.round((100 * n) / top)}%`; // CSSOM, allowed by the CSP
      return el("div", { className: "bin" }, bar, el("span", { className: "bin-label", text: `${Math.round(h.edges[i] * 100)}` }));
    }));
    setText("mean-agreement", h.mean === null ? "–" : `${Math.round(h.mean * 100)}%`);
    document.getElementById("final-labels").replaceChildren(...Object.entries(d.final_labels).map(([label, n]) =>
      el("tr", {}, el("th", { scope: "row", text: label }), el("td", { text: String(n) }))));
    document.getElementById("annotators").replaceChildren(...d.annotators.map((a) =>
      el("tr", {}, el("td", { text: a.simulated ? `${a.name} (sandbox workforce)` : a.name }),
        el("td", { text: a.role }), el("td", { text: String(a.judgements) }),
        el("td", { text: a.accuracy === undefined ? "–" : `${Math.round(a.accuracy * 100)}%` }))));
    document.getElementById("stopping").replaceChildren(...d.stopping.map((r) =>
      el("tr", {}, el("td", { text: String(r.n_judgements) }),
        el("td", { text: r.stop_reason === null ? "collecting" : r.stop_reason.replace("_", " ") }),
        el("td", { text: String(r.tasks) }))));
    setText("status", `Updated ${new Date().toLocaleTimeString()}`);
  } catch (e) { setText("status", e.message); }
}

select().addEventListener("change", loadDashboard);
document.getElementById("refresh").addEventListener("click", loadDashboard);

signIn(["customer", "admin"], async () => {
  await loadProjects();
  clearInterval(timer);
  timer = setInterval(loadDashboard, 5000);
});
