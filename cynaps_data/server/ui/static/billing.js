// Billing: balance, sandbox top-up, deposits per project, ledger history with the running
// balance, CSV download. API text goes into the page only as text (el / textContent).
import { api, el, getKey, setText, signIn } from "./common.js";

const fmt = (t) => new Date(t * 1000).toLocaleString();

async function load() {
  const history = await api("GET", "/v1/billing/history?limit=500");
  setText("balance", history.balance);
  document.getElementById("ledger").replaceChildren(...history.data.map((r) =>
    el("tr", { dataset: { txn: r.txn_id } },
      el("td", { text: fmt(r.created_at) }), el("td", { text: r.kind }),
      el("td", { text: r.project_name || r.project_id || "" }), el("td", { text: r.memo || "" }),
      el("td", { className: "num", text: r.amount }), el("td", { className: "num", text: r.balance }))));
  const deposits = await api("GET", "/v1/billing/deposits");
  document.getElementById("deposits").replaceChildren(...deposits.data.map((d) =>
    el("tr", {}, el("td", { text: d.name }), el("td", { text: d.state }),
      el("td", { className: "num", text: d.deposit }), el("td", { className: "num", text: d.held }))));
}

document.getElementById("topup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const amount = document.getElementById("topup-amount").value;
  const method = document.getElementById("topup-method").value;
  try {
    const t = await api("POST", "/v1/billing/topups", { amount, payment_method: method });
    setText("topup-status", `Added ${t.amount_cents / 100} Credits (${t.method}, simulated).`);
  } catch (e) { setText("topup-status", e.message); }
  await load();
});

document.getElementById("download").addEventListener("click", async () => {
  const response = await fetch("/v1/billing/history.csv", { headers: { Authorization: `Bearer ${getKey()}` }, credentials: "omit" });
  if (!response.ok) { setText("topup-status", `Download failed: HTTP ${response.status}`); return; }
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: "cynaps-ledger.csv" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
});

signIn(["customer"], async (me) => {
  setText("mode", me.livemode ? "" : "(sandbox: payments are simulated)");
  await load();
});
