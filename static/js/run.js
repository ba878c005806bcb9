// The run page: Plotly curves drawn from the page's JSON, refreshed every 2 s while the run trains.
(function () {
  "use strict";
  const initial = JSON.parse(document.getElementById("run-data").textContent);
  const results = JSON.parse(document.getElementById("run-results").textContent) || {};
  const config = document.getElementById("run-config");
  const liveUrl = config ? config.dataset.liveUrl : "";
  const ACTIVE = ["queued", "running"];
  const SPECIAL = ["epoch", "loss", "val_loss", "learning_rate", "epoch_time", "samples_per_second"];
  let series = initial.series || { epoch: [] };
  let state = initial.state;
  // Plotly renders a subset of HTML in tick labels and hover text; class and column names must stay text.
  const plain = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const layoutBase = { margin: { l: 50, r: 20, t: 40, b: 70 }, legend: { orientation: "h", y: -0.32 },
                       xaxis: { title: { text: "epoch" } }, font: { size: 12 } };
  const plotConfig = { displaylogo: false, responsive: true };

  function lastEpoch() { const e = series.epoch || []; return e.length ? e[e.length - 1] : 0; }

  function merge(update) {
    const epochs = update.epoch || [];
    if (!epochs.length) return;
    const known = Object.keys(series).concat(Object.keys(update).filter((k) => !(k in series)));
    const before = (series.epoch || []).length;
    known.forEach((key) => {
      if (!(key in series)) series[key] = new Array(before).fill(null);
      const values = update[key] || new Array(epochs.length).fill(null);
      series[key] = series[key].concat(values);
    });
    thin();
  }

  // A long run's curves stay near MAX_POINTS: past twice that, every other point goes (the first,
  // the last and the best epoch stay), as the server downsamples a whole run's curves.
  const MAX_POINTS = 2000;
  function thin() {
    const epochs = series.epoch || [];
    if (epochs.length <= 2 * MAX_POINTS) return;
    const best = state && state.best_epoch;
    const keep = epochs.map((e, i) => i === 0 || i === epochs.length - 1 || i % 2 === 0 || e === best);
    Object.keys(series).forEach((key) => { series[key] = series[key].filter((_, i) => keep[i]); });
  }

  function trace(name, label, dash) {
    return { x: series.epoch, y: series[name], name: label || name, mode: "lines+markers", line: { dash: dash || "solid" }, marker: { size: 4 } };
  }

  function bestShapes() {
    if (!state.best_epoch) return { shapes: [], annotations: [] };
    return {
      shapes: [{ type: "line", x0: state.best_epoch, x1: state.best_epoch, yref: "paper", y0: 0, y1: 1, line: { color: "#f59e0b", dash: "dot" } }],
      annotations: [{ x: state.best_epoch, yref: "paper", y: 1.02, text: "best " + state.best_epoch, showarrow: false, font: { color: "#b45309", size: 11 } }],
    };
  }

  function draw() {
    if (!window.Plotly) return;
    const best = bestShapes();
    const loss = [];
    if (series.loss) loss.push(trace("loss", "train loss"));
    if (series.val_loss) loss.push(trace("val_loss", "validation loss", "dash"));
    Plotly.react("chart-loss", loss, Object.assign({}, layoutBase, best, { title: { text: "Loss" } }), plotConfig);
    const metrics = Object.keys(series).filter((k) => !SPECIAL.includes(k) && !k.startsWith("val_"));
    const metricTraces = [];
    metrics.forEach((m) => {
      metricTraces.push(trace(m, "train " + m));
      if (series["val_" + m]) metricTraces.push(trace("val_" + m, "validation " + m, "dash"));
    });
    Plotly.react("chart-metric", metricTraces, Object.assign({}, layoutBase, best, { title: { text: metrics.length ? "Metrics" : "Metrics (none compiled)" } }), plotConfig);
    // A rate cut or decayed by 10x or more (a plateau, an exponential schedule) reads on a log axis.
    const rates = (series.learning_rate || []).filter((v) => v > 0);
    const spread = rates.length ? Math.max(...rates) / Math.min(...rates) : 1;
    const lrAxis = spread >= 10 ? { type: "log", exponentformat: "e" } : { rangemode: "tozero", exponentformat: "e" };
    Plotly.react("chart-lr", series.learning_rate ? [trace("learning_rate", "learning rate")] : [], Object.assign({}, layoutBase, { title: { text: "Learning rate" }, yaxis: lrAxis }), plotConfig);
    Plotly.react("chart-speed", series.samples_per_second ? [trace("samples_per_second", "samples / s")] : [], Object.assign({}, layoutBase, { title: { text: "Throughput" } }), plotConfig);
    drawTable();
  }

  let sortKey = "epoch", sortDesc = false;
  function drawTable() {
    const table = document.getElementById("epoch-table");
    if (!table) return;
    const keys = Object.keys(series);
    const head = document.createElement("tr");
    keys.forEach((k) => {
      const th = document.createElement("th");
      th.textContent = k.replace(/_/g, " ") + (k === sortKey ? (sortDesc ? " ▼" : " ▲") : "");
      th.className = "sortable num";
      th.addEventListener("click", () => { sortDesc = sortKey === k ? !sortDesc : false; sortKey = k; drawTable(); });
      head.appendChild(th);
    });
    table.tHead.replaceChildren(head);
    const order = (series.epoch || []).map((_, i) => i);
    const column = series[sortKey] || [];
    order.sort((a, b) => ((column[a] ?? -Infinity) - (column[b] ?? -Infinity)) * (sortDesc ? -1 : 1));
    // Five significant digits; from 100,000 up (samples per second) the whole number, never 1.2e+5.
    const cell = (v) => (Math.abs(v) >= 1e5 && Number.isFinite(v) ? Math.round(v).toString() : v.toPrecision(5));
    const rows = order.map((i) => {
      const tr = document.createElement("tr");
      if (series.epoch[i] === state.best_epoch) tr.style.background = "#fffbeb";
      keys.forEach((k) => {
        const td = document.createElement("td");
        const v = series[k][i];
        td.className = "num";
        td.textContent = v === null || v === undefined ? "—" : (k === "epoch" ? v : cell(Number(v)));
        tr.appendChild(td);
      });
      return tr;
    });
    table.tBodies[0].replaceChildren(...rows);
  }

  function drawResults() {
    if (!window.Plotly) return;
    if (results.confusion_matrix && document.getElementById("chart-confusion")) {
      const names = results.class_names.map(plain);
      Plotly.newPlot("chart-confusion", [{ type: "heatmap", z: results.confusion_matrix, x: names, y: names, colorscale: [[0, "#f8fafc"], [1, "#4f46e5"]],
        text: results.confusion_matrix, texttemplate: "%{text}", hovertemplate: "true %{y}<br>predicted %{x}<br>%{z} rows<extra></extra>" }],
        Object.assign({}, layoutBase, { title: { text: "Confusion matrix (test)" }, margin: { l: 110, r: 20, t: 40, b: 70 },
          // Class names as categories: digits' "0".."9" would otherwise read as numbers and lose every other label.
          xaxis: { title: { text: "predicted" }, type: "category", automargin: true },
          yaxis: { title: { text: "true", standoff: 12 }, type: "category", autorange: "reversed", automargin: true } }), plotConfig);
    }
    if (results.residuals && document.getElementById("chart-residuals")) {
      const t = results.residuals.true, p = results.residuals.predicted;
      const lo = Math.min(...t, ...p), hi = Math.max(...t, ...p);
      Plotly.newPlot("chart-residuals", [
        { x: t, y: p, mode: "markers", type: "scatter", name: "test rows", marker: { size: 5, opacity: 0.7 } },
        { x: [lo, hi], y: [lo, hi], mode: "lines", name: "perfect", line: { dash: "dot", color: "#9ca3af" } }],
        Object.assign({}, layoutBase, { title: { text: "Predicted vs true (test)" }, xaxis: { title: { text: "true" } }, yaxis: { title: { text: "predicted" } } }), plotConfig);
    }
    const forecast = results.forecast;
    if (forecast && document.getElementById("chart-forecast")) {
      const step = forecast.time_column ? plain(forecast.time_column) : "test step";
      Plotly.newPlot("chart-forecast", [
        { x: forecast.time, y: forecast.true, mode: "lines", name: "true", line: { color: "#111827" } },
        { x: forecast.time, y: forecast.predicted, mode: "lines", name: "forecast", line: { color: "#4f46e5", dash: "dot" } }],
        Object.assign({}, layoutBase, { title: { text: "Forecast over the test period" }, xaxis: { title: { text: step } },
          yaxis: { title: { text: plain(forecast.target || "value") } } }), plotConfig);
    }
    const found = results.lr_find;
    if (found && document.getElementById("chart-lr-find")) {
      const traces = [{ x: found.learning_rates, y: found.losses, mode: "lines", name: "smoothed loss", line: { color: "#4f46e5" } }];
      if (found.suggestion !== null) {
        const at = found.learning_rates.reduce((best, r, i) => Math.abs(Math.log(r / found.suggestion)) < Math.abs(Math.log(found.learning_rates[best] / found.suggestion)) ? i : best, 0);
        traces.push({ x: [found.suggestion], y: [found.losses[at]], mode: "markers", name: "chosen " + found.suggestion.toPrecision(3),
                      marker: { size: 11, color: "#dc2626" } });
      }
      Plotly.newPlot("chart-lr-find", traces, Object.assign({}, layoutBase, { title: { text: "Learning-rate range test" },
        xaxis: { title: { text: "learning rate" }, type: "log" }, yaxis: { title: { text: "training loss" } } }), plotConfig);
    }
    drawCurves();
    const cal = results.calibration;
    if (cal && cal.bins && document.getElementById("chart-calibration")) {
      Plotly.newPlot("chart-calibration", [
        { type: "bar", x: cal.bins.map((b) => b.confidence), y: cal.bins.map((b) => b.accuracy), width: 0.07, name: "test rows",
          customdata: cal.bins.map((b) => b.rows), marker: { color: "#4f46e5" },
          hovertemplate: "sure %{x:.3f}<br>right %{y:.3f}<br>%{customdata} rows<extra></extra>" },
        { x: [0, 1], y: [0, 1], mode: "lines", name: "calibrated", line: { dash: "dot", color: "#9ca3af" }, hoverinfo: "skip" }],
        Object.assign({}, layoutBase, { title: { text: "Calibration (test, ECE " + cal.ece.toFixed(3) + ")" },
          xaxis: { title: { text: "probability of the class picked" }, range: [0, 1.02] },
          yaxis: { title: { text: "share of rows it got right" }, range: [0, 1.02] } }), plotConfig);
    }
    const importance = results.importance;
    if (importance && importance.columns && document.getElementById("chart-importance")) {
      const shown = importance.columns.slice(0, 20).reverse();  // the largest at the top
      const score = importance.scored || (importance.metric === "r2" ? "R²" : "accuracy");
      Plotly.newPlot("chart-importance", [{ type: "bar", orientation: "h", y: shown.map((c) => plain(c.name)), x: shown.map((c) => c.mean),
        error_x: { type: "data", array: shown.map((c) => c.std), color: "#6b7280" }, marker: { color: "#4f46e5" },
        hovertemplate: "%{y}<br>" + score + " drop %{x:.4f}<extra></extra>" }],
        Object.assign({}, layoutBase, { title: { text: "Which columns matter (test)" }, margin: { l: 20, r: 20, t: 40, b: 50 },
          xaxis: { title: { text: score + " drop when shuffled" }, zeroline: true }, yaxis: { type: "category", automargin: true } }), plotConfig);
    }
  }

  // ROC and precision-recall curves; a binary classifier's threshold read off the exact grid of counts.
  function drawCurves() {
    const roc = results.roc;
    if (!roc || !document.getElementById("chart-roc")) return;
    const square = { xaxis: { title: { text: "false-positive rate" }, range: [0, 1] }, yaxis: { title: { text: "true-positive rate" }, range: [0, 1.02] } };
    const chance = { x: [0, 1], y: [0, 1], mode: "lines", name: "chance", line: { dash: "dot", color: "#9ca3af" }, hoverinfo: "skip" };
    if (roc.kind === "multiclass") {
      const traces = roc.classes.filter((c) => c.fpr).map((c) => ({ x: c.fpr, y: c.tpr, mode: "lines", name: plain(c.name) + " (AUC " + c.auc.toFixed(3) + ")" }));
      // Many classes: the legend beside the square, where it cannot cover the axis title.
      Plotly.newPlot("chart-roc", traces.concat([chance]), Object.assign({}, layoutBase, square,
        { title: { text: "ROC, each class against the rest (test)" }, legend: { orientation: "v", x: 1.02, y: 1 },
          margin: { l: 50, r: 10, t: 40, b: 50 } }), plotConfig);
      return;
    }
    const pos = roc.positives, neg = roc.negatives, c = roc.curve;
    const fpr = c.fp.map((v) => v / neg), tpr = c.tp.map((v) => v / pos);
    const cut = c.threshold.map((t) => (t === null ? "none" : t.toFixed(3)));
    const hover = "threshold %{customdata}<br>%{x:.3f}, %{y:.3f}<extra></extra>";
    const positive = plain(roc.positive);
    const pr = c.tp.map((tp, i) => [tp / pos, tp + c.fp[i] ? tp / (tp + c.fp[i]) : null, cut[i]]).filter((p) => p[1] !== null);
    Plotly.newPlot("chart-roc", [{ x: fpr, y: tpr, customdata: cut, mode: "lines", name: "ROC (AUC " + roc.auc.toFixed(3) + ")", line: { color: "#4f46e5" }, hovertemplate: hover },
      chance, { x: [0], y: [0], mode: "markers", name: "threshold", marker: { size: 11, color: "#dc2626" }, hoverinfo: "skip" }],
      Object.assign({}, layoutBase, square, { title: { text: "ROC curve (test)" } }), plotConfig);
    Plotly.newPlot("chart-pr", [{ x: pr.map((p) => p[0]), y: pr.map((p) => p[1]), customdata: pr.map((p) => p[2]), mode: "lines",
        name: "precision-recall (AP " + roc.average_precision.toFixed(3) + ")", line: { color: "#059669" }, hovertemplate: hover },
      { x: [0, 1], y: [pos / (pos + neg), pos / (pos + neg)], mode: "lines", name: "share of " + positive, line: { dash: "dot", color: "#9ca3af" }, hoverinfo: "skip" },
      { x: [0], y: [1], mode: "markers", name: "threshold", marker: { size: 11, color: "#dc2626" }, hoverinfo: "skip" }],
      Object.assign({}, layoutBase, { title: { text: "Precision-recall (test)" }, xaxis: { title: { text: "recall" }, range: [0, 1] },
        yaxis: { title: { text: "precision" }, range: [0, 1.02] } }), plotConfig);
    const slider = document.getElementById("threshold-slider"), input = document.getElementById("threshold-input");
    const steps = roc.grid.tp.length - 1;
    const show = (value) => {
      const i = Math.round(Math.min(1, Math.max(0, value)) * steps);
      const tp = roc.grid.tp[i], fp = roc.grid.fp[i], fn = pos - tp, tn = neg - fp;
      const precision = tp + fp ? tp / (tp + fp) : null, recall = tp / pos;
      const point = { tp: tp, fp: fp, fn: fn, tn: tn, precision: precision, recall: recall, accuracy: (tp + tn) / (pos + neg),
                      f1: precision && recall ? 2 * precision * recall / (precision + recall) : 0, false_positive_rate: fp / neg };
      document.getElementById("threshold-value").textContent = (i / steps).toFixed(3);
      document.querySelectorAll("[data-point]").forEach((cell) => {
        const v = point[cell.dataset.point];
        cell.textContent = v === null ? "–" : Number.isInteger(v) && ["tp", "fp", "fn", "tn"].includes(cell.dataset.point) ? String(v) : v.toFixed(3);
      });
      Plotly.restyle("chart-roc", { x: [[fp / neg]], y: [[recall]] }, [2]);
      Plotly.restyle("chart-pr", { x: [[recall]], y: [[precision === null ? 1 : precision]] }, [2]);
    };
    show(Number(slider.value));
    slider.addEventListener("input", () => { show(Number(slider.value)); if (input) input.value = Number(slider.value).toFixed(3); });
    if (input) input.addEventListener("input", () => { const v = Number(input.value); if (input.value !== "" && v >= 0 && v <= 1) { slider.value = v; show(v); } });
  }

  function showState() {
    const set = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text; };
    const badge = document.getElementById("run-status");
    if (badge) { badge.textContent = state.status.charAt(0).toUpperCase() + state.status.slice(1); badge.className = "badge " + state.status; }
    set("run-epochs", state.epochs_done + " / " + state.epochs_total);
    if (state.best_metric !== null && state.best_metric !== undefined) set("run-best", state.best_metric_name + " " + Number(state.best_metric).toFixed(4) + " @ " + state.best_epoch);
    if (state.device) set("run-device", state.device);
    if (state.worker) set("run-worker", state.worker);
    if (state.duration_seconds !== null) set("run-duration", state.duration_seconds.toFixed(1) + " s");
    const bar = document.getElementById("run-progress");
    if (bar && state.epochs_total) bar.style.width = Math.min(100, 100 * state.epochs_done / state.epochs_total) + "%";
    const note = document.getElementById("run-queue-note");
    if (note) note.hidden = state.status !== "queued";
    const reason = document.getElementById("run-reason");
    if (reason) { reason.hidden = !state.reason || state.status === "succeeded"; reason.textContent = state.reason; }
  }

  async function poll() {
    if (!liveUrl) return;
    try {
      const response = await fetch(liveUrl + "?since=" + lastEpoch(), { credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      const wasActive = ACTIVE.includes(state.status);
      merge(data.series || {});
      state = data.state;
      showState();
      draw();
      if (wasActive && !ACTIVE.includes(state.status)) { setTimeout(() => window.location.reload(), 600); return; }
    } catch (error) {
      console.warn("run page: polling failed, retrying", error);
    }
    if (ACTIVE.includes(state.status)) setTimeout(poll, 2000);
  }

  showState();
  draw();
  drawResults();
  if (ACTIVE.includes(state.status)) setTimeout(poll, 2000);
  // A ranking of the columns asked for after training: the page comes back with it (or its error).
  if (document.querySelector("[data-importance-pending], [data-analyses-pending]")) setTimeout(() => window.location.reload(), 3000);
})();
