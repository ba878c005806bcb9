// Compare page: every selected run's curves overlaid, aligned by epoch.
(function () {
  "use strict";
  const node = document.getElementById("compare-data");
  if (!node || !window.Plotly) return;
  const runs = JSON.parse(node.textContent);
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
})();
