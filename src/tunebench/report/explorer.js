// The report's Pareto view: every record on two axes the reader chooses; the front (records no other beats on
// both axes, each read in its better direction) ringed. Data: the JSON in #explorer-data (report/axes.py).
// Initial axes from the address: report.html#x=<axis>&y=<axis>.
(function () {
  const D = JSON.parse(document.getElementById("explorer-data").textContent);
  const W = 760, H = 460, L = 90, R = 30, T = 20, B = 60;
  const selX = document.getElementById("explorer-x"), selY = document.getElementById("explorer-y");
  const svg = document.getElementById("explorer-svg"), note = document.getElementById("explorer-note");
  const NS = svg.namespaceURI;  // SVG's, as the page's parser set it
  for (const [key, axis] of Object.entries(D.axes)) {
    for (const sel of [selX, selY]) {
      const opt = document.createElement("option");
      opt.value = key; opt.textContent = axis.label; sel.appendChild(opt);
    }
  }
  const asked = new URLSearchParams(location.hash.slice(1));
  selX.value = D.axes[asked.get("x")] ? asked.get("x") : D.x;
  selY.value = D.axes[asked.get("y")] ? asked.get("y") : D.y;

  function front(points, x, y) {
    const sx = D.axes[x].higher ? -1 : 1, sy = D.axes[y].higher ? -1 : 1;
    return points.filter(p => !points.some(o => o !== p
      && sx * o.values[x] <= sx * p.values[x] && sy * o.values[y] <= sy * p.values[y]
      && (o.values[x] !== p.values[x] || o.values[y] !== p.values[y]))).map(p => p.name);
  }
  function scale(values, log, lo0, hi0) {
    const f = log ? Math.log10 : (v => v);
    let lo = Math.min(...values.map(f)), hi = Math.max(...values.map(f));
    if (lo0 !== undefined) { lo = Math.min(lo, f(lo0)); hi = Math.max(hi, f(hi0)); }
    if (hi === lo) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.08;
    lo -= pad; hi += pad;
    return { map: (v, a, b) => a + (f(v) - lo) / (hi - lo) * (b - a),
             ticks: [0, 1, 2, 3, 4].map(i => log ? 10 ** (lo + i * (hi - lo) / 4) : lo + i * (hi - lo) / 4) };
  }
  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  }
  function fmt(v) { return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString("en") : Number(v.toPrecision(3)); }
  function draw() {
    const x = selX.value, y = selY.value, ax = D.axes[x], ay = D.axes[y];
    try { history.replaceState(null, "", "#x=" + encodeURIComponent(x) + "&y=" + encodeURIComponent(y)); }
    catch (e) { /* a file the browser will not rewrite the address of: the view still works */ }
    svg.replaceChildren();
    const points = D.points.filter(p => x in p.values && y in p.values
      && (!ax.log || p.values[x] > 0) && (!ay.log || p.values[y] > 0));
    const best = front(points, x, y);
    svg.dataset.front = best.join(",");
    if (!points.length) { note.textContent = "No record has a value on both axes."; return; }
    const ys = points.flatMap(p => p.ci95[y] || [p.values[y]]);
    const sx = scale(points.map(p => p.values[x]), ax.log), sy = scale(ys, ay.log);
    const px = v => sx.map(v, L, W - R), py = v => sy.map(v, H - B, T);
    el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#444" });
    el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#444" });
    for (const t of sx.ticks) el("text", { x: px(t), y: H - B + 16, "text-anchor": "middle", "font-size": 11 }, fmt(t));
    for (const t of sy.ticks) el("text", { x: L - 6, y: py(t) + 4, "text-anchor": "end", "font-size": 11 }, fmt(t));
    el("text", { x: (L + W - R) / 2, y: H - 18, "text-anchor": "middle", "font-size": 12 },
       ax.label + (ax.higher ? " (higher is better)" : " (lower is better)"));
    el("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 12,
                 transform: `rotate(-90 14 ${(T + H - B) / 2})` },
       ay.label + (ay.higher ? " (higher is better)" : " (lower is better)"));
    const ordered = points.filter(p => best.includes(p.name))
      .sort((a, b) => a.values[x] - b.values[x]);
    if (ordered.length > 1) {
      el("polyline", { points: ordered.map(p => `${px(p.values[x])},${py(p.values[y])}`).join(" "),
                       fill: "none", stroke: "#2a6", "stroke-dasharray": "4 3" });
    }
    for (const p of points) {
      const cx = px(p.values[x]), cy = py(p.values[y]), onFront = best.includes(p.name);
      if (p.ci95[y]) el("line", { x1: cx, x2: cx, y1: py(p.ci95[y][0]), y2: py(p.ci95[y][1]), stroke: "#999" });
      const dot = el("circle", { cx: cx, cy: cy, r: 6, "data-name": p.name,
                                 class: "point" + (onFront ? " front" : ""),
                                 fill: p.kind === "baseline" ? "#999" : "#1f77b4",
                                 stroke: onFront ? "#000" : "none", "stroke-width": 2.5 });
      const tip = document.createElementNS(NS, "title");
      tip.textContent = `${p.name}: ${fmt(p.values[x])}, ${fmt(p.values[y])}`;
      dot.appendChild(tip);
      el("text", { x: cx + 9, y: cy - 7, "font-size": 11 }, p.name);
    }
    const missing = D.points.length - points.length;
    note.textContent = `Ringed, on the dashed line: ${best.join(", ")} (no other record is better on both axes). `
      + "Grey: baselines; bars: 95% intervals of a score." + (missing ? ` ${missing} record(s) have no value on `
      + "one of these axes (baselines train nothing) and are not shown." : "");
  }
  selX.addEventListener("change", draw);
  selY.addEventListener("change", draw);
  draw();
})();
