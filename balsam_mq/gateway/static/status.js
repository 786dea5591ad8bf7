// The status page: initial data from the gateway's JSON endpoints, then kept current by the
// event stream (/events/stream, authenticated by the page's cookie).
//
// Job counts are never guessed from events: an event marks the (site, state) pairs it
// touches, and those are counted again (POST /jobs/count) a moment later, one round at a
// time, so the table converges on the truth however events and answers interleave. The
// charts bucket JOB_FINISHED and RUNNING events by time (series.js) and hang on the counts.
// Launcher sessions send no events: they are read again every few seconds. A stream that
// comes back new (not resumed) or after a gap reloads everything: events may be missed.
//
// window.balsamStatus is the page's state (tests and curious users read it).

import { chartEvent, newChart, when } from "./series.js";
import { renderAll, renderCharts, renderEmpties, renderSessions } from "./view.js";

const STATES = [...document.querySelectorAll("#counts thead th[data-state]")].map(
  (th) => th.dataset.state,
);
const MAX_PAGE = 1000; // the gateway's page limit
const HISTORY_PAGES = 5; // pages of events read for a chart's past
const LIMIT = { events: 40, failures: 20, batchJobs: 25, sessions: 25 };
const COUNT_DELAY_MS = 150; // events that come together are counted together
const PARALLEL = 4; // requests in flight at once (the stream holds another connection)
const SESSIONS_EVERY_MS = 10000;
const REFRESH_EVERY_MS = 60000; // sites, counts and batch jobs again (deletions send no event)

const $ = (id) => document.getElementById(id);

const page = {
  sites: new Map(), // id -> site
  counts: new Map(), // "site|state" -> count
  events: [], // newest first
  failures: [], // FAILED events, newest first
  batchJobs: [],
  sessions: { now: 0, fetchedAt: 0, items: [] }, // now: the gateway's clock at fetchedAt
  chart: newChart(Number($("window").value) * 1000),
  series: null, // what the charts show (view.renderCharts)
  stream: "connecting",
  loads: 0, // complete loads of the initial data
  counted: 0, // rounds of counting done
};
window.balsamStatus = page;

// --- requests ------------------------------------------------------------------------

async function api(path, body) {
  const init = { credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    window.location.reload(); // the login form, saying why
    throw new Error("logged out");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${path}: ${data.detail || response.statusText}`);
  return data;
}

async function inParallel(tasks, width) {
  const queue = [...tasks];
  const errors = [];
  const worker = async () => {
    while (queue.length) {
      try {
        await queue.shift()();
      } catch (e) {
        errors.push(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, queue.length) }, worker));
  if (errors.length) throw errors[0];
}

// ``fn`` once, ``ms`` after the first of any number of calls
function later(fn, ms) {
  let timer = null;
  return () => {
    if (timer === null) {
      timer = setTimeout(() => {
        timer = null;
        fn();
      }, ms);
    }
  };
}

function problem(text) {
  $("problem").textContent = text || "";
  $("problem").hidden = !text;
}

const render = () => renderAll(page);
const renderSoon = later(render, 50);

// --- counts ------------------------------------------------------------------------

const dirty = new Set();
let counting = false;
const countSoon = later(countDirty, COUNT_DELAY_MS);

function touch(siteId, state) {
  if (siteId == null || !STATES.includes(state)) return;
  dirty.add(`${siteId}|${state}`);
  countSoon();
}

async function countDirty() {
  if (counting) return countSoon();
  counting = true;
  const keys = [...dirty];
  dirty.clear();
  try {
    await inParallel(
      keys.map((key) => async () => {
        const [site, state] = key.split("|");
        const where = [
          ["site_id", "eq", Number(site)],
          ["state", "eq", state],
        ];
        page.counts.set(key, (await api("jobs/count", { where })).count);
      }),
      PARALLEL,
    );
    page.counted += 1;
  } catch (e) {
    keys.forEach((k) => dirty.add(k));
    problem(`Could not count jobs: ${e.message}`);
    setTimeout(countSoon, 3000);
  } finally {
    counting = false;
  }
  renderSoon();
  if (dirty.size) countSoon();
}

// --- loading -----------------------------------------------------------------------

async function loadSites() {
  const { items } = await api(`sites?order_by=id&limit=${MAX_PAGE}`);
  page.sites = new Map(items.map((s) => [s.id, s]));
  for (const id of page.sites.keys()) STATES.forEach((s) => touch(id, s));
}

async function loadLists() {
  const [events, failures] = await Promise.all([
    api(`events?order_by=-timestamp&limit=${LIMIT.events}`),
    api(`events?to_state=FAILED&order_by=-timestamp&limit=${LIMIT.failures}`),
  ]);
  events.items.forEach((ev) => keep(page.events, ev, LIMIT.events));
  failures.items.forEach((ev) => keep(page.failures, ev, LIMIT.failures));
}

async function loadBatchJobs() {
  page.batchJobs = (await api(`batch_jobs?order_by=-id&limit=${LIMIT.batchJobs}`)).items;
}

async function loadSessions() {
  const data = await api(`page/sessions?limit=${LIMIT.sessions}`);
  page.sessions = { now: Date.parse(data.now), fetchedAt: Date.now(), items: data.items };
  renderSessions(page);
  renderEmpties(page);
}

// The window's JOB_FINISHED and RUNNING events; past HISTORY_PAGES pages of them, the
// time before the oldest one read stays unknown (not drawn).
async function backfill(chart) {
  const start = Date.now() - chart.windowMs - chart.bucketMs;
  const after = encodeURIComponent(new Date(start).toISOString());
  let since = start;
  for (const filter of ["to_state=JOB_FINISHED", "to_state=RUNNING", "from_state=RUNNING"]) {
    const base = `events?${filter}&timestamp__gt=${after}&order_by=-timestamp`;
    for (let p = 0; p < HISTORY_PAGES; p++) {
      const { items } = await api(`${base}&offset=${p * MAX_PAGE}&limit=${MAX_PAGE}`);
      items.forEach((ev) => chartEvent(chart, ev));
      if (items.length < MAX_PAGE) break;
      if (p === HISTORY_PAGES - 1) since = Math.max(since, when(items[items.length - 1]));
    }
  }
  chart.since = since;
}

let loading = false;
let loadAgain = false;

async function loadAll() {
  if (loading) {
    loadAgain = true;
    return;
  }
  loading = true;
  try {
    await loadSites();
    await Promise.all([loadLists(), loadBatchJobs(), loadSessions(), backfill(page.chart)]);
    page.loads += 1;
    problem("");
  } catch (e) {
    problem(`Could not load the status: ${e.message}`);
    setTimeout(loadAll, 5000);
  } finally {
    loading = false;
  }
  render();
  if (loadAgain) {
    loadAgain = false;
    loadAll();
  }
}

const failed = (e) => problem(e.message);
const sitesSoon = later(() => loadSites().then(renderSoon, failed), 300);
const batchJobsSoon = later(
  () => Promise.all([loadBatchJobs(), loadSessions()]).then(renderSoon, failed),
  300,
);

// --- events ------------------------------------------------------------------------

// ``ev`` in ``list`` (newest first, no repeats, at most ``max``)
function keep(list, ev, max) {
  if (list.some((e) => e.id === ev.id)) return;
  const t = when(ev);
  let i = list.findIndex((e) => when(e) < t || (when(e) === t && e.id < ev.id));
  if (i < 0) i = list.length;
  list.splice(i, 0, ev);
  if (list.length > max) list.length = max;
}

function arrived(ev) {
  if (!page.sites.has(ev.site_id)) sitesSoon();
  if (ev.kind === "job") {
    touch(ev.site_id, ev.from_state);
    touch(ev.site_id, ev.to_state);
    if (ev.to_state === "FAILED") keep(page.failures, ev, LIMIT.failures);
    chartEvent(page.chart, ev);
  } else if (ev.kind === "batchjob") {
    batchJobsSoon();
  }
  keep(page.events, ev, LIMIT.events);
  renderSoon();
}

// --- the stream --------------------------------------------------------------------

let source = null;
let retryMs = 1000;
let reloadOnOpen = true; // a new stream (not a resumed one): what came before is unknown

function live(state, text) {
  page.stream = state;
  $("live").dataset.state = state;
  $("live").textContent = text;
}

function connect() {
  live("connecting", "connecting…");
  source = new EventSource("events/stream");
  source.addEventListener("open", (e) => {
    if (!(e instanceof MessageEvent)) {
      live("live", "live"); // the connection
      retryMs = 1000;
    } else if (reloadOnOpen) {
      // the gateway's `event: open`: the stream is bound, nothing from here on is missed
      reloadOnOpen = false;
      loadAll();
    }
  });
  source.addEventListener("event", (e) => arrived(JSON.parse(e.data)));
  source.addEventListener("gap", () => loadAll());
  source.addEventListener("error", (e) => {
    if (e instanceof MessageEvent && e.data) {
      source.close(); // the gateway ended the stream: the token expired
      window.location.reload();
    } else if (source.readyState === EventSource.CLOSED) {
      live("offline", "offline, retrying");
      setTimeout(reconnect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    } else {
      live("reconnecting", "reconnecting…"); // the browser resumes it (Last-Event-ID)
    }
  });
}

async function reconnect() {
  try {
    await api("whoami"); // a refused token reloads the page: the login form
  } catch {
    // the gateway is away: the stream fails again and retries later
  }
  reloadOnOpen = true;
  connect();
}

// --- start -------------------------------------------------------------------------

$("window").addEventListener("change", () => {
  const chart = newChart(Number($("window").value) * 1000);
  page.chart = chart;
  renderCharts(page);
  backfill(chart).then(renderSoon, failed);
});
window.addEventListener("resize", renderSoon);
setInterval(() => {
  // the time axis moves and heartbeats age; the rest is redrawn when it changes
  renderCharts(page);
  renderSessions(page);
}, 1000);
setInterval(() => loadSessions().catch(failed), SESSIONS_EVERY_MS);
setInterval(() => {
  if (page.loads) {
    sitesSoon();
    batchJobsSoon();
  }
}, REFRESH_EVERY_MS);
render();
connect();
