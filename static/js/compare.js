// Compare page: every selected run's curves overlaid, aligned by epoch.
(function () {
  "use strict";
  const node = document.getElementById("compare-data");
  if (!node || !window.Plotly) return;
  const runs = JSON.parse(node.textContent);
  // Plotly renders a subset of HTML in legends; run names must stay text.
  const plain = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  runs.forEach((run) => { run.name = plain(run.name); });
  const layout = (title, y) => ({ title: { text: title }, margin: { l: 50, r: 20, t: 40, b: 70 }, legend: { orientation: "h", y: -0.32 },
                                 xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: y } } });
  const config = { displaylogo: false, responsive: true };
  const loss = [];
  runs.forEach((run) => {
    const s = run.series;
    const key = s.val_loss ? "val_loss" : "loss";
    if (s[key]) loss.push({ x: s.epoch, y: s[key], name: run.name + " (" + key.replace("_", " ") + ")", mode: "lines" });
  });
  Plotly.newPlot("compare-loss", loss, layout("Loss", "validation loss where available"), config);
  const skip = ["epoch", "loss", "val_loss", "learning_rate", "epoch_time", "samples_per_second"];
  const names = [];
  runs.forEach((run) => Object.keys(run.series).forEach((k) => { if (!skip.includes(k) && !names.includes(k)) names.push(k); }));
  const metric = names.find((n) => n.startsWith("val_")) || names[0];
  const traces = metric ? runs.filter((r) => r.series[metric]).map((run) => ({ x: run.series.epoch, y: run.series[metric], name: run.name, mode: "lines" })) : [];
  Plotly.newPlot("compare-metric", traces, layout(metric ? metric.replace(/_/g, " ") : "No metrics", metric || ""), config);
  if (document.getElementById("compare-calibration")) {  // classifiers: how often right when this sure, on their test splits
    const lines = runs.filter((r) => r.calibration && r.calibration.bins.length).map((run) => ({
      x: run.calibration.bins.map((b) => b.confidence), y: run.calibration.bins.map((b) => b.accuracy), mode: "lines+markers",
      name: run.name + " (ECE " + run.calibration.ece.toFixed(3) + ")", customdata: run.calibration.bins.map((b) => b.rows),
      hovertemplate: "sure %{x:.3f}<br>right %{y:.3f}<br>%{customdata} rows<extra></extra>" }));
    lines.push({ x: [0, 1], y: [0, 1], mode: "lines", name: "calibrated", line: { dash: "dot", color: "#9ca3af" }, hoverinfo: "skip" });
    Plotly.newPlot("compare-calibration", lines, Object.assign(layout("Calibration (test)", "share of rows it got right"),
      { xaxis: { title: { text: "probability of the class picked" }, range: [0, 1.02] } }), config);
  }
  if (document.getElementById("compare-roc")) {  // binary classifiers: their test ROC curves, each decision threshold marked
    const curves = [];
    runs.filter((r) => r.roc).forEach((run, i) => {
      const color = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"][i % 6];  // Plotly's colours, as the other charts
      curves.push({ x: run.roc.fpr, y: run.roc.tpr, mode: "lines", name: run.name + " (AUC " + run.roc.auc.toFixed(3) + ")", line: { color: color } });
      if (run.roc.at) curves.push({ x: [run.roc.at.fpr], y: [run.roc.at.tpr], mode: "markers", marker: { size: 10, color: color },
                                    name: run.name + " threshold " + run.roc.at.threshold.toFixed(3) });
    });
    curves.push({ x: [0, 1], y: [0, 1], mode: "lines", name: "chance", line: { dash: "dot", color: "#9ca3af" }, hoverinfo: "skip" });
    Plotly.newPlot("compare-roc", curves, Object.assign(layout("ROC curves (test)", "true-positive rate"),
      { xaxis: { title: { text: "false-positive rate" }, range: [0, 1] } }), config);
  }
})();
