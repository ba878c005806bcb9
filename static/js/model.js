// A registered model's page: the rows it served per day and version, and its served class mix beside its test split's.
(function () {
  "use strict";
  const node = document.getElementById("serving-data");
  if (!node || !window.Plotly) return;
  const serving = JSON.parse(node.textContent);
  const plain = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const config = { displaylogo: false, responsive: true };
  const layout = (title, extra) => Object.assign({ title: { text: title }, margin: { l: 50, r: 20, t: 40, b: 70 },
    legend: { orientation: "h", y: -0.25 }, barmode: "stack" }, extra || {});
  if (document.getElementById("chart-served")) {
    Plotly.newPlot("chart-served", serving.rows_per_day.map((v) => ({ type: "bar", x: serving.dates, y: v.rows, name: "v" + v.version })),
      layout("Rows predicted per day", { yaxis: { title: { text: "rows" }, rangemode: "tozero" } }), config);
  }
  const drift = serving.drift;
  if (drift && document.getElementById("chart-mix")) {
    const names = Array.from(new Set(Object.keys(drift.test.counts).concat(Object.keys(drift.served.counts)))).sort();
    const share = (counts) => { const total = Object.values(counts).reduce((a, b) => a + b, 0) || 1; return names.map((n) => (counts[n] || 0) / total); };
    Plotly.newPlot("chart-mix", [
      { type: "bar", x: names.map(plain), y: share(drift.test.counts), name: "test split", marker: { color: "#9ca3af" } },
      { type: "bar", x: names.map(plain), y: share(drift.served.counts), name: "served", marker: { color: "#4f46e5" } }],
      layout("Predicted classes: served and on the test split", { barmode: "group", xaxis: { type: "category" },
        yaxis: { title: { text: "share of rows" }, tickformat: ".0%" } }), config);
  }
})();
