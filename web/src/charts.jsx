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

// Colours of the lines of a chart with several series, in order.
export const SERIES_COLORS = ["--accent", "--accent-2", "--warning", "--danger", "--running", "--muted"];

// xs, ys: arrays of numbers; or xs and series: [{label, ys}] for several lines (with a legend).
// The figure's accessible name says how many points there are and the latest value(s).
export function LineChart({ xs, ys, series, title, yLabel, xLabel = "step", color = "--accent", log = false, height = 220, time = false, format = shortNumber }) {
  const host = useRef(null);
  const chart = useRef(null);
  const lines = series || [{ label: yLabel, ys, color }];
  const shape = lines.map((l) => l.label).join("\u0000");
  const data = [xs, ...lines.map((l) => l.ys)];
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
        series: [
          {},
          ...lines.map((l, i) => ({
            label: l.label,
            stroke: cssVar(l.color || SERIES_COLORS[i % SERIES_COLORS.length], "#3b5bdb"),
            width: 2,
            points: { show: xs.length < 60 },
          })),
        ],
      };
      chart.current = new UPlot(options, data, host.current);
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
  }, [log, height, color, time, shape]);
  useEffect(() => {
    if (chart.current) chart.current.setData(data);
  }, [xs, ys, series]);
  const lastOf = (values) => (values && values.length ? values[values.length - 1] : null);
  const last = series ? null : lastOf(ys);
  const latest = series
    ? lines.map((l) => `${l.label} ${format(lastOf(l.ys))}`).join(", ")
    : last !== null
      ? String(last)
      : "";
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
        aria-label={`${title}: ${xs.length} points${latest ? `, latest ${latest}` : ""}`}
      />
      {series ? (
        <ul class="legend" aria-hidden="true">
          {lines.map((l, i) => (
            <li>
              <span class="legend-swatch" style={{ background: `var(${l.color || SERIES_COLORS[i % SERIES_COLORS.length]})` }} />
              {l.label}
            </li>
          ))}
        </ul>
      ) : null}
    </figure>
  );
}
