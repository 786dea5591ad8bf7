// Time charts on a <canvas>, drawn by hand (no library): bars on the left axis and a line
// on the right one, or a stepped area. Colours come from the canvas's CSS variables
// (--bars, --line, --area, --grid, --text), so the page's style sheet owns them.
//
//   drawChart(canvas, {start, bucketMs, bars: [3, 0, 1], line: [10, 10, 11],
//                      barLabel: "finished", lineLabel: "total"});
//
// bars[i] / line[i] belong to the bucket [start + i*bucketMs, start + (i+1)*bucketMs);
// null means "not known" (nothing is drawn there). Hovering shows a bucket's values.

const PAD = { top: 12, right: 44, bottom: 24, left: 44 };

export function drawChart(canvas, spec) {
  canvas._chart = spec;
  if (!canvas._hover) {
    canvas._hover = true;
    canvas.addEventListener("mousemove", (e) => {
      const rect = canvas.getBoundingClientRect();
      canvas._at = e.clientX - rect.left;
      render(canvas);
    });
    canvas.addEventListener("mouseleave", () => {
      canvas._at = null;
      render(canvas);
    });
  }
  render(canvas);
}

function render(canvas) {
  const spec = canvas._chart;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (!spec || width === 0 || height === 0) return;
  const ratio = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const css = getComputedStyle(canvas);
  const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const colors = {
    bars: color("--bars", "#4c78a8"),
    line: color("--line", "#e45756"),
    area: color("--area", "#4c78a8"),
    grid: color("--grid", "#ddd"),
    text: color("--text", "#555"),
  };
  const n = Math.max(1, (spec.bars || spec.line || []).length);
  const plot = {
    x: PAD.left,
    y: PAD.top,
    w: Math.max(10, width - PAD.left - (spec.bars && spec.line ? PAD.right : 28)),
    h: Math.max(10, height - PAD.top - PAD.bottom),
  };
  const xAt = (i) => plot.x + (i / n) * plot.w;
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;

  const leftValues = spec.bars || spec.line || [];
  const left = axis(maxOf(leftValues));
  const right = spec.bars && spec.line ? axis(maxOf(spec.line)) : left;
  const yLeft = (v) => plot.y + plot.h - (v / left.max) * plot.h;
  const yRight = (v) => plot.y + plot.h - (v / right.max) * plot.h;

  // grid and the left axis
  ctx.fillStyle = colors.text;
  ctx.strokeStyle = colors.grid;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const tick of left.ticks) {
    const y = Math.round(yLeft(tick)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(plot.x, y);
    ctx.lineTo(plot.x + plot.w, y);
    ctx.stroke();
    ctx.fillText(String(tick), plot.x - 6, y);
  }
  if (spec.bars && spec.line) {
    ctx.textAlign = "left";
    for (const tick of right.ticks) {
      ctx.fillText(String(tick), plot.x + plot.w + 6, yRight(tick));
    }
  }
  // time labels
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const every = Math.max(1, Math.round(n / 5));
  for (let i = 0; i <= n; i += every) {
    const t = spec.start + i * spec.bucketMs;
    ctx.fillText(clock(t, spec.bucketMs), xAt(i), plot.y + plot.h + 6);
  }

  if (spec.bars) {
    ctx.fillStyle = colors.bars;
    const w = Math.max(1, (plot.w / n) * 0.8);
    spec.bars.forEach((v, i) => {
      if (v === null || v === 0) return;
      const y = yLeft(v);
      ctx.fillRect(xAt(i) + (plot.w / n - w) / 2, y, w, plot.y + plot.h - y);
    });
  }
  if (spec.line) {
    const y = spec.bars ? yRight : yLeft;
    const stepped = !spec.bars;
    path(ctx, spec.line, xAt, y, stepped);
    if (stepped) {
      ctx.strokeStyle = colors.area;
      ctx.lineWidth = 2;
      ctx.stroke();
      fillUnder(ctx, spec.line, xAt, y, plot, colors.area);
    } else {
      ctx.strokeStyle = colors.line;
      ctx.lineWidth = 2;
      ctx.stroke();
    }
  }
  // the frame
  ctx.lineWidth = 1;
  ctx.strokeStyle = colors.text;
  ctx.beginPath();
  ctx.moveTo(plot.x + 0.5, plot.y);
  ctx.lineTo(plot.x + 0.5, plot.y + plot.h + 0.5);
  ctx.lineTo(plot.x + plot.w, plot.y + plot.h + 0.5);
  ctx.stroke();

  if (canvas._at != null && canvas._at >= plot.x && canvas._at <= plot.x + plot.w) {
    hover(ctx, spec, Math.min(n - 1, Math.floor(((canvas._at - plot.x) / plot.w) * n)), {
      xAt,
      plot,
      n,
      colors,
    });
  }
}

// A line through each bucket's value (at the bucket's end), or steps across each bucket.
function path(ctx, values, xAt, y, stepped) {
  ctx.beginPath();
  let drawing = false;
  values.forEach((v, i) => {
    if (v === null) {
      drawing = false;
      return;
    }
    if (stepped) {
      if (drawing) ctx.lineTo(xAt(i), y(v));
      else ctx.moveTo(xAt(i), y(v));
      ctx.lineTo(xAt(i + 1), y(v));
    } else if (drawing) {
      ctx.lineTo(xAt(i + 1), y(v));
    } else {
      ctx.moveTo(xAt(i + 1), y(v));
    }
    drawing = true;
  });
}

function fillUnder(ctx, values, xAt, y, plot, colour) {
  ctx.save();
  ctx.globalAlpha = 0.18;
  ctx.fillStyle = colour;
  values.forEach((v, i) => {
    if (v === null || v === 0) return;
    ctx.fillRect(xAt(i), y(v), xAt(i + 1) - xAt(i), plot.y + plot.h - y(v));
  });
  ctx.restore();
}

function hover(ctx, spec, i, { xAt, plot, colors }) {
  const x = Math.round((xAt(i) + xAt(i + 1)) / 2) + 0.5;
  ctx.strokeStyle = colors.text;
  ctx.setLineDash([3, 3]);
  ctx.beginPath();
  ctx.moveTo(x, plot.y);
  ctx.lineTo(x, plot.y + plot.h);
  ctx.stroke();
  ctx.setLineDash([]);
  const t = spec.start + i * spec.bucketMs;
  const lines = [`${clock(t, spec.bucketMs)} – ${clock(t + spec.bucketMs, spec.bucketMs)}`];
  if (spec.bars) lines.push(`${spec.barLabel || "value"}: ${show(spec.bars[i])}`);
  if (spec.line) lines.push(`${spec.lineLabel || "value"}: ${show(spec.line[i])}`);
  const w = Math.max(...lines.map((l) => ctx.measureText(l).width)) + 12;
  const h = lines.length * 15 + 8;
  const bx = x + w + 8 > plot.x + plot.w ? x - w - 8 : x + 8;
  ctx.fillStyle = "rgba(20, 20, 20, 0.85)";
  ctx.fillRect(bx, plot.y + 4, w, h);
  ctx.fillStyle = "#fff";
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  lines.forEach((l, k) => ctx.fillText(l, bx + 6, plot.y + 8 + k * 15));
}

function show(v) {
  if (v === null || v === undefined) return "unknown";
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

function maxOf(values) {
  return values.reduce((m, v) => (v === null ? m : Math.max(m, v)), 0);
}

// Round ticks from 0 to a top at or above ``max``: steps of 1, 2 or 5 times a power of 10.
export function axis(max) {
  const top = Math.max(1, max);
  const raw = top / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw));
  const ticks = [];
  for (let v = 0; v < top + step; v += step) {
    ticks.push(v);
    if (v >= top) break;
  }
  return { max: ticks[ticks.length - 1], ticks };
}

function clock(ms, bucketMs) {
  const d = new Date(ms);
  const pad = (x) => String(x).padStart(2, "0");
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return bucketMs < 60000 ? `${hm}:${pad(d.getSeconds())}` : hm;
}
