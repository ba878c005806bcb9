// The data set page: Plotly charts from the json_script data, and a status poll while ingesting.
(function () {
  "use strict";
  var statusBox = document.getElementById("ingest-status");
  if (statusBox) {
    var poll = function () {
      fetch(statusBox.dataset.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (body && body.finished) { window.location.reload(); return; }
          if (body) document.getElementById("status-badge").textContent = body.status;
          window.setTimeout(poll, 1500);
        })
        .catch(function () { window.setTimeout(poll, 4000); });
    };
    window.setTimeout(poll, 1000);
  }

  var dataNode = document.getElementById("dataset-charts");
  if (!dataNode || !window.Plotly) return;
  var data = JSON.parse(dataNode.textContent);
  var config = { displayModeBar: false, responsive: true };
  var accent = "#4f46e5";

  // Plotly renders a subset of HTML in titles and tick labels; user text must stay text.
  function plain(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function layout(title, extra) {
    var base = { title: { text: plain(title), font: { size: 13 } }, margin: { l: 45, r: 10, t: 32, b: 40 },
                 paper_bgcolor: "#fff", plot_bgcolor: "#fff", bargap: 0.05 };
    return Object.assign(base, extra || {});
  }

  if (data.balance && document.getElementById("chart-balance")) {
    Plotly.newPlot("chart-balance", [{ type: "bar", x: data.balance.labels.map(plain), y: data.balance.counts,
      marker: { color: accent } }], layout(data.balance.title, { xaxis: { type: "category" } }), config);
  }
  if (data.series && document.getElementById("chart-series")) {
    var traces = Object.keys(data.series.series).map(function (name) {
      return { type: "scattergl", mode: "lines", name: plain(name), x: data.series.x, y: data.series.series[name] };
    });
    Plotly.newPlot("chart-series", traces, layout("Values over time"), config);
  }
  var holder = document.getElementById("column-charts");
  (data.columns || []).forEach(function (column) {
    if (!holder) return;
    var div = document.createElement("div");
    div.className = "mini";
    holder.appendChild(div);
    var trace;
    if (column.kind === "histogram") {
      var centres = [], widths = [];
      for (var i = 0; i < column.counts.length; i++) {
        centres.push((column.edges[i] + column.edges[i + 1]) / 2);
        widths.push(column.edges[i + 1] - column.edges[i]);
      }
      trace = { type: "bar", x: centres, y: column.counts, width: widths, marker: { color: accent } };
    } else {
      trace = { type: "bar", x: column.labels.map(plain), y: column.counts, marker: { color: "#0891b2" } };
    }
    Plotly.newPlot(div, [trace], layout(column.name, column.kind === "bar" ? { xaxis: { type: "category" } } : {}), config);
  });
})();
