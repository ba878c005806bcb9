// Predict page: a series' forecast past the end of its data, drawn after the series' last steps.
(function () {
  "use strict";
  const node = document.getElementById("ahead-data");
  if (!node || !window.Plotly) return;
  const ahead = JSON.parse(node.textContent);
  // Plotly renders a subset of HTML in titles; column names must stay text.
  const plain = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const history = ahead.history;
  const lastTime = history.time[history.time.length - 1], lastValue = history.values[history.values.length - 1];
  Plotly.newPlot("chart-ahead", [
    { x: history.time, y: history.values, mode: "lines", name: "the series", line: { color: "#111827" } },
    // The forecast starts from the last known step, so the two lines join.
    { x: [lastTime].concat(ahead.rows.map((r) => r[0])), y: [lastValue].concat(ahead.rows.map((r) => r[1])),
      mode: "lines+markers", name: "forecast", line: { color: "#4f46e5", dash: "dot" }, marker: { size: 4 } }],
    { margin: { l: 60, r: 20, t: 40, b: 60 }, legend: { orientation: "h", y: -0.25 },
      title: { text: "Forecast past the end of the data" }, xaxis: { title: { text: plain(ahead.time_column || "step") } },
      yaxis: { title: { text: plain(ahead.target) } } }, { displayModeBar: false, responsive: true });
})();
