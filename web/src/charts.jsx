// Line charts (uPlot, loaded only when a chart is shown).
import { useEffect, useRef } from "preact/hooks";

let uplotModule = null;
function loadUplot() {
  uplotModule = uplotModule || import("uplot").then((m) => m.default);
  return uplotModule;
}

function shortNumber(value) {
  if (value === null || value === undefined) return "";
  const n = Math.abs(value);
  if (n !== 0 && (n < 1e-3 || n >= 1e6)) return value.toExponential(1);
  return String(Number(value.toPrecision(3)));
}

function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

// xs, ys: arrays of numbers. label: accessible description of the chart.
export function LineChart({ xs, ys, title, yLabel, xLabel = "step", color = "--accent", log = false, height = 220, time = false, format = shortNumber }) {
  const host = useRef(null);
  const chart = useRef(null);
  useEffect(() => {
    let disposed = false;
    let observer = null;
    loadUplot().then((UPlot) => {
      if (disposed || !host.current) return;
      const width = host.current.clientWidth || 400;
      const axisColor = cssVar("--muted", "#666");
      const gridColor = cssVar("--border", "#ddd");
      const options = {
        width,
        height,
        legend: { show: false },
        cursor: { drag: { x: true, y: false } },
        scales: {
          x: { time },
          y: log ? { distr: 3 } : { range: (u, min, max) => (min === max ? [min - Math.abs(min || 1) * 0.5, max + Math.abs(max || 1) * 0.5] : [min, max]) },
        },
        axes: [
          { stroke: axisColor, grid: { stroke: gridColor }, ticks: { stroke: gridColor }, label: time ? undefined : xLabel },
          { stroke: axisColor, grid: { stroke: gridColor }, ticks: { stroke: gridColor }, size: 70, values: (u, values) => values.map(format) },
        ],
        series: [{}, { label: yLabel, stroke: cssVar(color, "#3b5bdb"), width: 2, points: { show: xs.length < 60 } }],
      };
      chart.current = new UPlot(options, [xs, ys], host.current);
      observer = new ResizeObserver(() => {
        if (chart.current && host.current) chart.current.setSize({ width: host.current.clientWidth, height });
      });
      observer.observe(host.current);
    });
    return () => {
      disposed = true;
      if (observer) observer.disconnect();
      if (chart.current) chart.current.destroy();
      chart.current = null;
    };
  }, [log, height, color, time]);
  useEffect(() => {
    if (chart.current) chart.current.setData([xs, ys]);
  }, [xs, ys]);
  const last = ys.length ? ys[ys.length - 1] : null;
  return (
    <figure class="chart">
      <figcaption>
        {title}
        {last !== null ? <span class="muted"> · latest {Number(last.toPrecision(4))}</span> : null}
      </figcaption>
      <div
        ref={host}
        class="chart-host"
        role="img"
        aria-label={`${title}: ${xs.length} points${last !== null ? `, latest ${last}` : ""}`}
      />
    </figure>
  );
}
