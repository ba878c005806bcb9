// Sweep page: a parallel-coordinates chart of the hyper-parameters against each run's best metric.
// Only runs that have reported a metric are drawn; a parameter spread over a factor of ten or more
// (learning rates) gets a log axis labelled with the values tried (or its powers of ten, when a range
// gave many); names (optimizers) get a tick each.
(function () {
  "use strict";
  const node = document.getElementById("sweep-data");
  const chart = document.getElementById("sweep-chart");
  if (!node || !chart || !window.Plotly) return;
  const data = JSON.parse(node.textContent);
  const runs = data.runs.filter((r) => typeof r.metric === "number" && Number.isFinite(r.metric));
  if (!runs.length) {
    chart.classList.add("empty");
    chart.textContent = data.runs.length
      ? "The chart fills in as the runs report their best metric."
      : "This sweep has no runs.";
    return;
  }
  const dimension = (label, values) => {
    if (values.some((v) => typeof v === "string")) {  // names (optimizers): one tick each
      const names = [...new Set(values)].sort();
      return { label: label, values: values.map((v) => names.indexOf(v)), tickvals: names.map((_, i) => i),
               ticktext: names, range: [-0.5, names.length - 0.5] };
    }
    const distinct = [...new Set(values)].sort((a, b) => a - b);
    const positive = distinct.every((v) => typeof v === "number" && v > 0);
    if (positive && distinct.length > 1 && distinct[distinct.length - 1] / distinct[0] >= 10) {
      if (distinct.length <= 8) {
        return { label: label + " (log)", values: values.map(Math.log10), tickvals: distinct.map(Math.log10),
                 ticktext: distinct.map(String) };
      }
      // Many values (drawn from a range): ticks at the powers of ten they span.
      const decades = [];
      for (let e = Math.floor(Math.log10(distinct[0])); e <= Math.ceil(Math.log10(distinct[distinct.length - 1])); e++) {
        decades.push(e);
      }
      return { label: label + " (log)", values: values.map(Math.log10), tickvals: decades,
               ticktext: decades.map((e) => String(Number("1e" + e))) };
    }
    return { label: label, values: values };
  };
  const dimensions = data.params.map((p) => dimension(p, runs.map((r) => r.params[p])));
  const metricName = runs[0].metric_name || "best metric";
  const metric = runs.map((r) => r.metric);
  dimensions.push({ label: metricName, values: metric });
  // The colours span the values reported; one value alone (one run so far) gets no colour scale.
  const low = Math.min(...metric), high = Math.max(...metric);
  Plotly.newPlot(chart, [{ type: "parcoords", dimensions: dimensions,
    line: { color: metric, colorscale: "Viridis", cmin: low, cmax: high > low ? high : low + 1, showscale: high > low,
            colorbar: { title: { text: metricName } } } }],
    { title: { text: "Hyper-parameters and " + metricName + " (" + runs.length + " of " + data.runs.length + " runs)" },
      margin: { l: 60, r: 60, t: 100, b: 30 } },
    { displaylogo: false, responsive: true });
})();
