// Drawing the status page from its state (see status.js for ``page``): the counts table,
// the charts, launcher sessions, batch jobs, the latest events and failures. Text goes into
// the page as text (textContent), never as markup.

import { drawChart } from "./charts.js";
import { computeSeries, when } from "./series.js";

const $ = (id) => document.getElementById(id);
const FINAL = new Set(["JOB_FINISHED", "FAILED"]);

export function renderAll(page) {
  renderCounts(page);
  renderCharts(page);
  renderSessions(page);
  renderBatchJobs(page);
  renderEvents(page);
  renderFailures(page);
  renderEmpties(page);
}

// The jobs in ``state`` on all the caller's sites; null until every site's count is known.
export function total(page, state) {
  let sum = 0;
  for (const id of page.sites.keys()) {
    const n = page.counts.get(`${id}|${state}`);
    if (n === undefined) return null;
    sum += n;
  }
  return sum;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "class") node.className = v;
    else if (k === "data") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function clock(ms) {
  if (!Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  const pad = (x) => String(x).padStart(2, "0");
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === new Date().toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time.slice(0, 5)}`;
}

export function duration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

function badge(state) {
  return el("span", { class: `badge s-${String(state).toLowerCase()}`, text: state });
}

const siteName = (page, id) => page.sites.get(id)?.name ?? `site ${id}`;

// --- counts --------------------------------------------------------------------------

export function renderCounts(page) {
  const table = $("counts");
  const states = [...table.tHead.querySelectorAll("th[data-state]")].map((th) => th.dataset.state);
  const body = table.tBodies[0];
  const ids = [...page.sites.keys()];
  if (body.dataset.sites !== ids.join(",")) {
    body.dataset.sites = ids.join(",");
    body.replaceChildren(
      ...ids.map((id) =>
        el(
          "tr",
          { data: { site: id } },
          el("th", { class: "site", text: siteName(page, id), title: page.sites.get(id).hostname }),
          ...states.map((s) => el("td", { data: { state: s } })),
          el("td", { class: "total", data: { state: "total" } }),
        ),
      ),
    );
  }
  for (const row of body.rows) {
    const counts = states.map((s) => page.counts.get(`${row.dataset.site}|${s}`));
    const sum = counts.includes(undefined) ? undefined : counts.reduce((a, b) => a + b, 0);
    row.querySelectorAll("td").forEach((cell, i) => show(cell, i < states.length ? counts[i] : sum));
  }
  if (ids.length > 1) {
    const totals = states.map((s) => total(page, s) ?? undefined);
    const all = totals.includes(undefined) ? undefined : totals.reduce((a, b) => a + b, 0);
    const row = el(
      "tr",
      {},
      el("th", { class: "site", text: "all sites" }),
      ...states.map((s) => el("td", { data: { state: s } })),
      el("td", { class: "total", data: { state: "total" } }),
    );
    row.querySelectorAll("td").forEach((cell, i) => show(cell, i < states.length ? totals[i] : all));
    table.tFoot.replaceChildren(row);
  } else {
    table.tFoot.replaceChildren();
  }
  $("no-sites").hidden = page.loads === 0 || ids.length > 0;
}

function show(cell, n) {
  cell.textContent = n === undefined ? "…" : String(n);
  cell.classList.toggle("zero", n === 0);
}

// --- charts --------------------------------------------------------------------------

export function renderCharts(page) {
  const s = computeSeries(page.chart, total(page, "JOB_FINISHED"), total(page, "RUNNING"));
  page.series = s;
  const sum = s.finished.reduce((a, x) => a + (x || 0), 0);
  const peak = Math.max(0, ...s.running.map((x) => x || 0));
  $("bucket").textContent = duration(s.bucketMs);
  $("running-bucket").textContent = duration(s.bucketMs);
  $("finished-window").textContent = String(sum);
  $("finished-total").textContent = s.cumulative.at(-1) ?? "…";
  $("running-now").textContent = s.runningNow ?? "…";
  $("running-peak").textContent = peak > 0 && peak < 0.1 ? "< 0.1" : String(Math.round(peak * 10) / 10);
  const common = { start: s.start, bucketMs: s.bucketMs };
  drawChart($("throughput"), {
    ...common,
    bars: s.finished,
    line: s.cumulative,
    barLabel: "finished",
    lineLabel: "in total",
  });
  drawChart($("utilisation"), { ...common, line: s.running, lineLabel: "running (mean)" });
}

// --- sessions and batch jobs -----------------------------------------------------------

export function renderSessions(page) {
  const { now, fetchedAt, items } = page.sessions;
  const serverNow = now + (Date.now() - fetchedAt); // heartbeats aged by the gateway's clock
  $("sessions").tBodies[0].replaceChildren(
    ...items.map((s) => {
      const live = s.state === "RUNNING";
      const silent = Math.max(0, serverNow - Date.parse(s.heartbeat));
      const beat = live ? `${duration(silent)} ago` : `ended ${clock(Date.parse(s.ended_at))}`;
      return el(
        "tr",
        { data: { session: s.id }, title: s.stop_reason || "" },
        el("td", { text: s.id }),
        el("td", { text: siteName(page, s.site_id) }),
        el("td", { text: s.batch_job_id ?? "—" }),
        el("td", { text: `${s.hostname}:${s.pid}` }),
        el("td", {}, badge(s.state)),
        el("td", { text: s.cores ? `${s.nodes} (${s.cores} cores)` : s.nodes }),
        el("td", { text: s.running ?? "—" }),
        el("td", { text: beat, class: live && silent > 60000 ? "late" : "" }),
        el("td", { text: clock(Date.parse(s.created_at)) }),
      );
    }),
  );
}

function renderBatchJobs(page) {
  $("batch-jobs").tBodies[0].replaceChildren(
    ...page.batchJobs.map((b) =>
      el(
        "tr",
        { data: { batchJob: b.id } },
        el("td", { text: b.id }),
        el("td", { text: siteName(page, b.site_id) }),
        el("td", {}, badge(b.state)),
        el("td", { text: b.num_nodes }),
        el("td", { text: `${b.wall_time_min} min` }),
        el("td", { text: [b.queue, b.project].filter(Boolean).join(" / ") || "—" }),
        el("td", { text: b.scheduler_id ?? "—" }),
        el("td", { text: clock(Date.parse(b.created_at)) }),
      ),
    ),
  );
}

// --- events and failures -----------------------------------------------------------------

function subject(ev) {
  if (ev.kind === "job") return `job ${ev.job_id}`;
  if (ev.kind === "batchjob") return `batch job ${ev.batch_job_id}`;
  return `app ${ev.app_id}`;
}

function renderEvents(page) {
  $("events").replaceChildren(
    ...page.events.map((ev) =>
      el(
        "li",
        // steps nobody had work for are dimmed (a job's end never is)
        { class: ev.quiet && !FINAL.has(ev.to_state) ? "quiet" : "", data: { id: ev.id } },
        el("time", { text: clock(when(ev)), datetime: ev.timestamp }),
        el("span", { class: "site", text: siteName(page, ev.site_id) }),
        el("span", { class: "what", text: subject(ev) }),
        el("span", { class: "move" }, ev.from_state ? `${ev.from_state} → ` : "", badge(ev.to_state)),
        el("span", { class: "by muted", text: ev.by ?? "" }),
      ),
    ),
  );
}

// A failure's state_data as one line: its reason (or error) first, then anything else.
function reason(data) {
  if (!data || !Object.keys(data).length) return "no reason recorded";
  const { reason: text, error, ...rest } = data;
  const head = text ?? error;
  const more = Object.keys(rest).length ? JSON.stringify(rest) : "";
  const first = typeof head === "string" || head == null ? head : JSON.stringify(head);
  return [first, more].filter(Boolean).join(" · ") || JSON.stringify(data);
}

function renderFailures(page) {
  $("failures").replaceChildren(
    ...page.failures.map((ev) =>
      el(
        "li",
        { data: { id: ev.id, job: ev.job_id } },
        el("time", { text: clock(when(ev)), datetime: ev.timestamp }),
        el("span", { class: "site", text: siteName(page, ev.site_id) }),
        el("span", { class: "what", text: subject(ev) }),
        el("span", { class: "move muted", text: `from ${ev.from_state ?? "?"}` }),
        el("div", { class: "reason", text: reason(ev.state_data) }),
      ),
    ),
  );
}

// "No ... yet" under each empty table or list, once the page has loaded.
export function renderEmpties(page) {
  for (const p of document.querySelectorAll("p.empty[data-for]")) {
    const box = $(p.dataset.for);
    const rows = box.tBodies ? box.tBodies[0].rows.length : box.children.length;
    p.hidden = page.loads === 0 || rows > 0;
  }
}
