/* The franchise dashboard's charts (admin/leads/dashboard.html).
 *
 * Reads the figures the page embeds with json_script ("dashboard-data") and
 * draws them with the vendored Chart.js (static/vendor/chartjs). The page's
 * tables hold the same figures, so it reads without this script.
 */
(function () {
  "use strict";

  var COLORS = {
    blue: "#417690",
    green: "#2e8540",
    amber: "#e0a100",
    red: "#ba2121",
    grey: "#8a8a8a",
    purple: "#6f42c1",
  };

  function data() {
    var node = document.getElementById("dashboard-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas) {
      return null;
    }
    config.options = Object.assign(
      { responsive: true, maintainAspectRatio: false, animation: false },
      config.options || {}
    );
    return new window.Chart(canvas, config);
  }

  function shortDays(days) {
    return days.map(function (day) {
      return day.slice(5); // MM-DD
    });
  }

  function minutesLabel(value) {
    if (value === null || value === undefined) {
      return "no data";
    }
    if (value < 1) {
      return Math.round(value * 60) + " s";
    }
    if (value < 60) {
      return value.toFixed(1) + " min";
    }
    if (value < 1440) {
      return (value / 60).toFixed(1) + " h";
    }
    return (value / 1440).toFixed(1) + " d";
  }

  function render() {
    var figures = data();
    if (!figures || !window.Chart) {
      return;
    }
    var days = shortDays(figures.days);

    draw("chart-speed", {
      type: "bar",
      data: {
        labels: figures.speed.labels,
        datasets: [
          { label: "Median", data: figures.speed.medianMinutes, backgroundColor: COLORS.blue },
          { label: "p95", data: figures.speed.p95Minutes, backgroundColor: COLORS.amber },
        ],
      },
      options: {
        indexAxis: "y",
        scales: {
          x: {
            type: "logarithmic",
            title: { display: true, text: "minutes (log scale)" },
            ticks: {
              // Label the powers of ten only: 6 s, 1 min, 10 min, 1.7 h, 16.7 h, ...
              callback: function (value) {
                return Number.isInteger(Math.log10(value)) ? minutesLabel(value) : "";
              },
            },
          },
        },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.dataset.label + ": " + minutesLabel(item.raw);
              },
            },
          },
        },
      },
    });

    draw("chart-funnel", {
      type: "bar",
      data: {
        labels: figures.funnel.labels,
        datasets: [
          { label: "Leads by status now", data: figures.funnel.values, backgroundColor: COLORS.blue },
        ],
      },
      options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
    });

    draw("chart-leads", {
      type: "bar",
      data: {
        labels: days,
        datasets: [{ label: "Leads", data: figures.leads, backgroundColor: COLORS.blue }],
      },
      options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });

    draw("chart-messages", {
      type: "bar",
      data: {
        labels: days,
        datasets: [
          { label: "Sent", data: figures.messages.sent, backgroundColor: COLORS.green, stack: "messages" },
          { label: "Blocked", data: figures.messages.blocked, backgroundColor: COLORS.amber, stack: "messages" },
          { label: "Failed", data: figures.messages.failed, backgroundColor: COLORS.red, stack: "messages" },
          {
            label: "Opt-outs (right axis)",
            data: figures.optOuts,
            type: "line",
            yAxisID: "optOuts",
            borderColor: COLORS.purple,
            backgroundColor: COLORS.purple,
            pointRadius: 2,
          },
        ],
      },
      options: {
        scales: {
          x: { stacked: true },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
          optOuts: {
            position: "right",
            beginAtZero: true,
            grid: { drawOnChartArea: false },
            ticks: { precision: 0 },
          },
        },
      },
    });

    draw("chart-ai-cost", {
      type: "bar",
      data: {
        labels: days,
        datasets: [{ label: "AI cost (USD)", data: figures.aiCost, backgroundColor: COLORS.grey }],
      },
      options: {
        scales: {
          y: {
            beginAtZero: true,
            ticks: {
              callback: function (value) {
                return "$" + Number(value).toFixed(2);
              },
            },
          },
        },
      },
    });

    var bookings = document.getElementById("chart-bookings");
    if (bookings) {
      // One row per location: the chart grows with the number of locations it shows.
      bookings.parentNode.style.height = Math.max(140, 40 + 22 * figures.bookings.labels.length) + "px";
    }
    draw("chart-bookings", {
      type: "bar",
      data: {
        labels: figures.bookings.labels,
        datasets: [
          { label: "Appointments booked", data: figures.bookings.values, backgroundColor: COLORS.green, maxBarThickness: 18 },
        ],
      },
      options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", render);
  } else {
    render();
  }
})();
