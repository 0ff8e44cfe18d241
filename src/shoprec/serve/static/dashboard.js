// The dashboard: traffic, click-through, exploration share, coverage, privacy, model metrics.
"use strict";
(() => {
  const { api, el, status } = shoprec;
  const NS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);

  const compact = (v) => (v >= 1e6 ? `${(v / 1e6).toFixed(1)}M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)}k` : `${Math.round(v)}`);

  function svg(tag, attrs) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  // A small line chart: series = [{name, color, points: [[t, y], ...]}]; t in seconds.
  function lineChart(target, series, { percent = false } = {}) {
    const W = 360, H = 170, L = 38, B = 22, T = 8, R = 8;
    const all = series.flatMap((s) => s.points);
    const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img" });
    if (!all.length) {
      const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" });
      t.textContent = "no data in this window yet";
      box.append(t);
      $(target).replaceChildren(box);
      return;
    }
    const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
    const ymax = Math.max(percent ? 0.05 : 1, ...all.map((p) => p[1])) * 1.1;
    const x = (t) => L + (t1 > t0 ? ((t - t0) / (t1 - t0)) * (W - L - R) : (W - L - R) / 2);
    const y = (v) => H - B - (v / ymax) * (H - B - T);
    box.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#d0d5dd" }));
    for (const f of [0, 0.5, 1]) {
      const label = svg("text", { x: L - 4, y: y(f * ymax) + 3, "text-anchor": "end" });
      label.textContent = percent ? `${(100 * f * ymax).toFixed(0)}%` : compact(f * ymax);
      box.append(label, svg("line", { x1: L, y1: y(f * ymax), x2: W - R, y2: y(f * ymax), stroke: "#f2f4f7" }));
    }
    for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
      const label = svg("text", { x: x(t), y: H - 6, "text-anchor": anchor });
      label.textContent = new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      box.append(label);
    }
    series.forEach((s, i) => {
      const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
      box.append(svg("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, class: "series" }));
      for (const p of s.points) box.append(svg("circle", { cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: s.color }));
      const key = svg("text", { x: L + 6 + i * 90, y: T + 8 });
      key.textContent = s.name;
      key.setAttribute("style", `fill:${s.color}`);
      box.append(key);
    });
    $(target).replaceChildren(box);
  }

  function barChart(target, metrics) {
    const entries = Object.entries(metrics).filter(([, v]) => typeof v === "number").slice(0, 8);
    if (!entries.length) {
      $(target).replaceChildren(el("p", { class: "meta" }, "No offline metrics saved with this model."));
      return;
    }
    const W = 360, row = 20, H = entries.length * row + 6, L = 110;
    const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img" });
    const vmax = Math.max(...entries.map(([, v]) => Math.abs(v)), 1e-9);
    entries.forEach(([name, v], i) => {
      const label = svg("text", { x: L - 6, y: i * row + 14, "text-anchor": "end" });
      label.textContent = name;
      const w = (Math.abs(v) / vmax) * (W - L - 60);
      const value = svg("text", { x: L + w + 4, y: i * row + 14 });
      value.textContent = v.toFixed(4);
      box.append(label, svg("rect", { x: L, y: i * row + 4, width: w, height: row - 8, fill: "#2f6fed", rx: 3 }), value);
    });
    $(target).replaceChildren(box);
  }

  function histogram(target, counts) {
    const total = counts.reduce((a, b) => a + b, 0);
    if (!total) {
      $(target).replaceChildren(el("p", { class: "meta" }, "No slates in this window yet."));
      return;
    }
    const W = 360, H = 150, B = 22, L = 8, bw = (W - 2 * L) / counts.length;
    const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img" });
    const cmax = Math.max(...counts);
    counts.forEach((c, i) => {
      const h = (c / cmax) * (H - B - 12);
      box.append(svg("rect", { x: L + i * bw + 1, y: H - B - h, width: bw - 2, height: h, fill: "#b54708", rx: 2 }));
      const label = svg("text", { x: L + i * bw + bw / 2, y: H - 8, "text-anchor": "middle" });
      label.textContent = (i / counts.length).toFixed(1);
      box.append(label);
    });
    $(target).replaceChildren(box);
  }

  const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");

  function privacyWords(p) {
    if (!p || !p.dp) return "trained without differential privacy";
    return `user-level differential privacy: ε = ${Number(p.epsilon).toFixed(2)}, δ = ${Number(p.delta).toExponential(1)}`;
  }

  function tile(label, value, id) {
    return el("div", { class: "tile", id }, el("div", { class: "value" }, value), el("div", { class: "label" }, label));
  }

  async function refresh() {
    const [hours, minutes] = $("window").value.split(",");
    try {
      const s = await api("GET", `/v1/stats?hours=${hours}&bucket_minutes=${minutes}`);
      const total = (k) => s.series.reduce((a, p) => a + p[k], 0);
      const m = s.model;
      const privacy = m.privacy || {};
      const epsilon = privacy.dp ? `ε = ${Number(privacy.epsilon).toFixed(2)}` : "not DP-trained";
      const paths = s.served_paths || {};
      const served = Object.values(paths).reduce((a, b) => a + b, 0);
      $("tiles").replaceChildren(
        tile("slates served", total("slates"), "tile-slates"),
        tile("impressions", total("impressions"), "tile-impressions"),
        tile("events received", total("events"), "tile-events"),
        tile("click-through", pct(s.click_through), "tile-ctr"),
        tile("exploration share", pct(s.exploration_share), "tile-explore"),
        tile("catalogue coverage", pct(s.catalogue_coverage), "tile-coverage"),
        tile("privacy budget spent", epsilon, "tile-privacy"),
        tile("quick path (busy)", served ? pct((paths.embedding || 0) / served) : "–", "tile-degraded"),
        tile("model", m.loaded ? `${m.name}` : "none", "tile-model"));
      const pts = (f) => s.series.map((p) => [p.t, f(p)]);
      lineChart("chart-traffic", [
        { name: "slates", color: "#2f6fed", points: pts((p) => p.slates) },
        { name: "events", color: "#12b76a", points: pts((p) => p.events) }]);
      lineChart("chart-ctr", [{ name: "CTR", color: "#7a5af8",
        points: pts((p) => (p.impressions ? p.clicks / p.impressions : 0)) }], { percent: true });
      lineChart("chart-explore", [{ name: "explored", color: "#b54708",
        points: pts((p) => (p.impressions ? p.explored / p.impressions : 0)) }], { percent: true });
      histogram("chart-weights", s.weight_histogram || []);
      barChart("chart-metrics", m.offline_metrics || {});
      $("model-words").textContent = m.loaded ? m.summary : "No model is served yet.";
      const choice = m.choice || {};
      const win = m.data_window || {};
      const x = m.exploration || {};
      const rows = [["why this model", choice.reason], ["version", m.version], ["file", m.path], ["items", m.n_items],
        ["shoppers in training", m.n_users], ["events in training", m.n_events],
        ["trained on events", `${when(win.first_event)} to ${when(win.last_event)}`],
        ["trained at", m.trained_at ? new Date(m.trained_at).toLocaleString() : "–"],
        ["slate policy", `${m.policy} (weight rule ${x.weight_rule}, up to ${x.explore_budget} exploring slots)`],
        ["similar-item index", m.similar_index], ["privacy", privacyWords(privacy)]];
      $("model-table").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, `${v ?? "–"}`))));
      const learning = m.online_learning || {};
      $("learning-words").textContent = learning.running ? `running now: ${learning.running}`
        : learning.every_s ? `fine-tunes the model on new events every ${Math.round(learning.every_s / 60)} minutes`
          : "runs on request (POST /v1/model/retrain or shoprec retrain)";
      const head = el("tr", {}, ...["started", "status", "new events", "NDCG@10 before → after", "what happened"]
        .map((h) => el("th", {}, h)));
      const fmt = (v) => (v === null || v === undefined ? "–" : v.toFixed(4));
      $("retrain-table").replaceChildren(head, ...(s.retrains || []).map((r) => el("tr", { class: `run-${r.status}` },
        el("td", {}, when(r.started_at)), el("td", {}, r.status), el("td", {}, `${r.n_events}`),
        el("td", {}, `${fmt(r.metric_before)} → ${fmt(r.metric_after)}`), el("td", {}, r.message))));
      await showExperiment();
      status(`updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      status(err.message, true);
    }
  }

  // The newest experiment: per variant click-through and purchases per slate with their 95%
  // intervals, each variant against the control, and the sample-ratio check.
  async function showExperiment() {
    const [e] = await api("GET", "/v1/experiments");
    if (!e) {
      $("experiment-words").textContent = "No experiment yet (POST /v1/experiments starts one).";
      $("experiment-table").replaceChildren();
      return;
    }
    const p = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(2)}%`);
    const ci = (i) => `${p(i.value)} [${p(i.low)}, ${p(i.high)}]`;
    const srm = e.sample_ratio.mismatch ? " Sample ratio MISMATCH: do not read the differences." : "";
    $("experiment-words").textContent = `${e.id}: ${e.stopped_at ? "stopped" : "running"} since ` +
      `${when(e.started_at)}; control ${e.control}.${srm}`;
    const vs = Object.fromEntries(e.comparisons.filter((c) => c.metric === "click_through").map((c) => [c.variant, c]));
    const head = el("tr", {}, ...["variant", "shoppers", "slates", "click-through", "purchases / slate",
      "vs control (click-through)"].map((h) => el("th", {}, h)));
    $("experiment-table").replaceChildren(head, ...e.variants.map((v) => {
      const c = vs[v.name];
      const diff = c ? `${p(c.difference)} [${p(c.low)}, ${p(c.high)}], p = ${c.p_value === null ? "–" : c.p_value.toFixed(4)}` : "control";
      return el("tr", { class: "variant" }, el("td", {}, v.name), el("td", {}, `${v.shoppers}`), el("td", {}, `${v.slates}`),
        el("td", {}, ci(v.click_through)), el("td", {}, ci(v.purchases_per_slate)), el("td", {}, diff));
    }));
  }

  async function main() {
    const config = await shoprec.init();
    if (config.demo) await shoprec.session({ dashboard: true });  // aggregate figures only
    $("window").onchange = refresh;
    await refresh();
    setInterval(refresh, 5000);
  }

  main();
})();
