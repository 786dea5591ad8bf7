// The charts' data: JOB_FINISHED and RUNNING events bucketed by time, and the series built
// on today's counts. Pure: no page, no requests.
//
// A series hangs on the current counts and walks back through the buckets:
//   cumulative[i] = jobs finished now - those that finished after bucket i
//   running[i]    = the mean number of RUNNING jobs over bucket i (so far, for the last):
//                   level at its end - w / length, where w sums each start (+1) and stop
//                   (-1) weighted by how far into the bucket it happened.
// Both sums are order-free, so events may arrive in any order, twice (by id), or late.

export const BUCKETS = 60; // bars per chart

export function newChart(windowMs) {
  return {
    windowMs,
    bucketMs: windowMs / BUCKETS,
    finished: new Map(), // bucket -> jobs that finished in it
    running: new Map(), // bucket -> {d: starts minus stops, w: the same, weighted (ms)}
    seen: new Map(), // event id -> its time
    since: Infinity, // from when the past is known (set once it is read)
  };
}

// An event's time in ms (read once).
export function when(ev) {
  if (ev._t === undefined) ev._t = Date.parse(ev.timestamp);
  return ev._t;
}

export function chartEvent(chart, ev) {
  const finished = ev.to_state === "JOB_FINISHED";
  const delta = (ev.to_state === "RUNNING" ? 1 : 0) - (ev.from_state === "RUNNING" ? 1 : 0);
  if (ev.kind !== "job" || (!finished && !delta) || chart.seen.has(ev.id)) return;
  const t = when(ev);
  chart.seen.set(ev.id, t);
  const bucket = Math.floor(t / chart.bucketMs);
  if (finished) chart.finished.set(bucket, (chart.finished.get(bucket) || 0) + 1);
  if (delta) {
    const entry = chart.running.get(bucket) || { d: 0, w: 0 };
    entry.d += delta;
    entry.w += delta * (t - bucket * chart.bucketMs);
    chart.running.set(bucket, entry);
  }
}

// The series at ``now``, given the jobs JOB_FINISHED and RUNNING now (null: not known yet,
// and then nothing is drawn). Buckets that left the window are dropped.
export function computeSeries(chart, finishedNow, runningNow, now = Date.now()) {
  const size = chart.bucketMs;
  const end = Math.floor(now / size);
  const first = end - BUCKETS + 1;
  for (const [id, t] of chart.seen) if (t < (first - 1) * size) chart.seen.delete(id);
  for (const map of [chart.finished, chart.running]) {
    for (const b of map.keys()) if (b < first) map.delete(b);
  }
  let laterFinished = 0;
  let laterRunning = 0;
  for (const [b, n] of chart.finished) if (b > end) laterFinished += n; // clocks ahead of ours
  for (const [b, e] of chart.running) if (b > end) laterRunning += e.d;
  const finished = new Array(BUCKETS).fill(null);
  const cumulative = new Array(BUCKETS).fill(null);
  const running = new Array(BUCKETS).fill(null);
  const counted = finishedNow !== null && runningNow !== null;
  for (let i = BUCKETS - 1; i >= 0; i--) {
    const b = first + i;
    const done = chart.finished.get(b) || 0;
    const change = chart.running.get(b) || { d: 0, w: 0 };
    if (counted && b * size >= chart.since) {
      const length = b === end ? Math.max(1, now - b * size) : size;
      const level = runningNow - laterRunning; // at the bucket's end
      finished[i] = done;
      cumulative[i] = Math.max(0, finishedNow - laterFinished);
      running[i] = Math.max(0, level - change.w / length);
    }
    laterFinished += done;
    laterRunning += change.d;
  }
  return { start: first * size, bucketMs: size, finished, cumulative, running, runningNow };
}
