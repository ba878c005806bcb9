// Sweep page: a parallel-coordinates chart of the hyper-parameters against each run's best metric.
(function () {
  "use strict";
  const node = document.getElementById("sweep-data");
  if (!node || !window.Plotly) return;
  const data = JSON.parse(node.textContent);
  const runs = data.runs;
  if (!runs.length) return;
  const dimensions = data.params.map((p) => ({ label: p, values: runs.map((r) => r.params[p]) }));
  const metricName = (runs.find((r) => r.metric_name) || {}).metric_name || "best metric";
  const metric = runs.map((r) => (r.metric === null || r.metric === undefined ? NaN : r.metric));
  dimensions.push({ label: metricName, values: metric });
  Plotly.newPlot("sweep-chart", [{ type: "parcoords", dimensions: dimensions,
    line: { color: metric.map((v) => (Number.isNaN(v) ? 0 : v)), colorscale: "Viridis", showscale: true } }],
    { title: { text: "Hyper-parameters and " + metricName }, margin: { l: 60, r: 60, t: 60, b: 30 } }, { displaylogo: false, responsive: true });
})();
