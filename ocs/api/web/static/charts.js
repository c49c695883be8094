// Draws the chart a page describes in <script type="application/json" id="chart-data">
// ({kind, labels, series: [{label, data}]}) with the vendored Chart.js; no inline script (CSP).
(function () {
  var source = document.getElementById("chart-data");
  var canvas = document.getElementById("chart");
  if (!source || !canvas || !window.Chart) { return; }
  var spec = JSON.parse(source.textContent);
  var colours = ["#2f6db5", "#e08a2c", "#3a9a5b"];
  new window.Chart(canvas, {
    type: spec.kind,
    data: {
      labels: spec.labels,
      datasets: spec.series.map(function (s, i) {
        return { label: s.label, data: s.data.map(Number), backgroundColor: colours[i % 3],
                 borderColor: colours[i % 3], borderWidth: spec.kind === "line" ? 2 : 0, pointRadius: 2 };
      })
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { position: "top", align: "end" } },
      scales: { y: { beginAtZero: true } }
    }
  });
  canvas.setAttribute("data-drawn", "1");
})();
