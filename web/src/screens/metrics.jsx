// Metrics (issue 5: GET /api/metrics): spend over time per provider and hardware, jobs by state,
// success rate, queue depth. Spend per provider from the billing routes works on every server.
import { useEffect, useMemo, useState } from "preact/hooks";
import { api, optional } from "../api.js";
import { LineChart } from "../charts.jsx";
import { ErrorNote, Loading, NotAvailable, Section } from "../components.jsx";
import { STATUS_LABELS, duration, money, number } from "../format.js";
import { CostLimitStatus, useCostLimit } from "./cost-limit.jsx";

const RANGES = [["7", "7 days"], ["30", "30 days"], ["90", "90 days"]];
const isDateKey = (k) => /^(day|date|period|bucket|start|time)/.test(k);
const isMoneyKey = (k) => /(usd|cost|spend)/.test(k);

function BarList({ entries, format = (v) => v, label }) {
  const max = Math.max(1, ...entries.map(([, v]) => Number(v) || 0));
  return (
    <ul class="bars" aria-label={label}>
      {entries.map(([key, value]) => (
        <li class="bar">
          <span class="bar-label">{STATUS_LABELS[key] || key}</span>
          <span class="bar-track" aria-hidden="true">
            <span class={`bar-fill bar-${key}`} style={{ width: `${(100 * (Number(value) || 0)) / max}%` }} />
          </span>
          <span class="bar-value">{format(value)}</span>
        </li>
      ))}
    </ul>
  );
}

function asEntries(value) {
  if (Array.isArray(value)) {
    return value
      .filter((row) => row && typeof row === "object")
      .map((row) => {
        const key = row.status ?? row.provider ?? row.hardware ?? row.name ?? row.key;
        const num = row.count ?? row.jobs ?? row.value ?? row.cost_usd ?? row.usd;
        return key !== undefined && num !== undefined ? [String(key), num] : null;
      })
      .filter(Boolean);
  }
  return Object.entries(value).filter(([, v]) => typeof v === "number");
}

function SeriesBlock({ title, rows }) {
  const dateKey = Object.keys(rows[0]).find(isDateKey);
  const valueKey = Object.keys(rows[0]).find((k) => isMoneyKey(k) && typeof rows[0][k] === "number") || Object.keys(rows[0]).find((k) => typeof rows[0][k] === "number");
  const groupKeys = Object.keys(rows[0]).filter((k) => k !== dateKey && k !== valueKey && typeof rows[0][k] === "string");
  const totals = useMemo(() => {
    const byDay = new Map();
    for (const row of rows) byDay.set(row[dateKey], (byDay.get(row[dateKey]) || 0) + (Number(row[valueKey]) || 0));
    const days = [...byDay.keys()].sort();
    return [days.map((d) => new Date(d).getTime() / 1000 / 86400), days.map((d) => byDay.get(d))];
  }, [rows]);
  const groups = useMemo(() => {
    const sums = new Map();
    for (const row of rows) {
      const key = groupKeys.map((k) => row[k]).filter(Boolean).join(" · ") || "all";
      sums.set(key, (sums.get(key) || 0) + (Number(row[valueKey]) || 0));
    }
    return [...sums.entries()].sort((a, b) => b[1] - a[1]);
  }, [rows]);
  const fmt = isMoneyKey(valueKey) ? (v) => money(v) : (v) => number(v, 2);
  return (
    <Section title={title}>
      {dateKey && totals[0].length > 1 ? <LineChart xs={totals[0]} ys={totals[1]} title={`${title} per day`} yLabel={valueKey} xLabel="days since 1970" /> : null}
      <BarList entries={groups} format={fmt} label={title} />
    </Section>
  );
}

function KnownMetrics({ data }) {
  const byStatus = data.jobs_by_status || {};
  const waiting = (byStatus.queued || 0) + (byStatus.pending_approval || 0);
  const days = data.spend_by_day || [];
  const xs = days.map((d) => new Date(`${d.key}T00:00:00Z`).getTime() / 1000);
  const ys = days.map((d) => d.spent_usd);
  const providers = Object.entries(data.jobs_by_provider || {});
  const run = data.durations && data.durations.average_run_seconds;
  return (
    <>
      <div class="stats">
        <div class="stat"><div class="stat-label">Jobs</div><div class="stat-value">{data.jobs_total}</div></div>
        <div class="stat"><div class="stat-label">Success rate</div><div class="stat-value">{data.success_rate == null ? "—" : `${number(data.success_rate * 100, 1)}%`}</div></div>
        <div class="stat"><div class="stat-label">Spent</div><div class="stat-value">{money(data.total_spent_usd)}</div></div>
        <div class="stat"><div class="stat-label">Waiting in the queue</div><div class="stat-value">{waiting}</div></div>
        <div class="stat"><div class="stat-label">Average run</div><div class="stat-value">{run == null ? "—" : duration(run)}</div></div>
      </div>
      <div class="grid-2">
        <Section title="Spend per day">
          {xs.length > 1 ? <LineChart xs={xs} ys={ys} title="Spend per day" yLabel="US dollars" time format={(v) => money(v)} /> : <p class="muted">Not enough days yet.</p>}
        </Section>
        <Section title="Jobs by state">
          {Object.keys(byStatus).length ? <BarList entries={Object.entries(byStatus)} label="Jobs by state" /> : <p class="muted">No job in this range.</p>}
        </Section>
        <Section title="Spend by provider">
          <BarList entries={(data.spend_by_provider || []).map((b) => [b.key, b.spent_usd])} format={money} label="Spend by provider" />
          {providers.length ? (
            <p class="muted small">{providers.map(([p, states]) => `${p}: ${Object.values(states).reduce((a, b) => a + b, 0)} jobs`).join(" · ")}</p>
          ) : null}
        </Section>
        <Section title="Spend by hardware">
          {(data.spend_by_hardware || []).length ? (
            <BarList entries={data.spend_by_hardware.map((b) => [b.key, b.spent_usd])} format={money} label="Spend by hardware" />
          ) : (
            <p class="muted">No spend in this range.</p>
          )}
        </Section>
      </div>
    </>
  );
}

function MetricsBody({ data }) {
  if ("jobs_total" in data && "spend_by_day" in data) return <KnownMetrics data={data} />;
  const stats = [];
  const blocks = [];
  for (const [key, value] of Object.entries(data)) {
    if (key === "success" || value === null || value === undefined) continue;
    const title = key.replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());
    if (typeof value === "number") {
      const shown = /rate|ratio/.test(key) ? `${number(value <= 1 ? value * 100 : value, 1)}%` : isMoneyKey(key) ? money(value) : /seconds/.test(key) ? `${Math.round(value / 60)} min` : number(value, 2);
      stats.push(
        <div class="stat">
          <div class="stat-label">{title}</div>
          <div class="stat-value">{shown}</div>
        </div>,
      );
    } else if (Array.isArray(value) && value.length && typeof value[0] === "object" && Object.keys(value[0]).some(isDateKey)) {
      blocks.push(<SeriesBlock title={title} rows={value} />);
    } else if (typeof value === "object") {
      const entries = asEntries(value);
      if (entries.length)
        blocks.push(
          <Section title={title}>
            <BarList entries={entries} format={isMoneyKey(key) ? money : (v) => v} label={title} />
          </Section>,
        );
    }
  }
  return (
    <>
      {stats.length ? <div class="stats">{stats}</div> : null}
      <div class="grid-2">{blocks}</div>
    </>
  );
}

export function MetricsScreen() {
  const [days, setDays] = useState("30");
  const [state, setState] = useState({ loading: true });
  const [spend, setSpend] = useState([]);
  const limits = useCostLimit([]);
  useEffect(() => {
    setState((s) => ({ ...s, loading: true }));
    optional("/api/metrics", { query: { days } })
      .then((reply) => setState({ loading: false, ...reply }))
      .catch((error) => setState({ loading: false, error }));
  }, [days]);
  useEffect(() => {
    api("/api/health")
      .then((h) => Promise.all(h.providers.map((p) => api(`/api/cloud/providers/${p}/billing`).catch(() => null))))
      .then((replies) => setSpend(replies.filter(Boolean)))
      .catch(() => setSpend([]));
  }, []);
  return (
    <div class="metrics-screen">
      <div class="page-head">
        <h1>Metrics</h1>
        <label class="inline-field">
          <span>Range</span>
          <select value={days} onChange={(e) => setDays(e.target.value)}>
            {RANGES.map(([id, label]) => <option value={id}>{label}</option>)}
          </select>
        </label>
      </div>
      <div class="grid-2">
        <Section title="Spend through this server">
          {spend.length ? (
            <BarList entries={spend.map((s) => [s.provider, s.spent_usd])} format={money} label="Spend by provider, all time" />
          ) : (
            <p class="muted">No spend recorded yet.</p>
          )}
          <p class="muted small">
            This month: {spend.map((s) => `${s.provider} ${money(s.spent_this_month_usd)}`).join(", ") || "—"}
          </p>
        </Section>
        <Section title="Spending limits">
          <CostLimitStatus state={limits} />
        </Section>
      </div>
      {state.loading ? <Loading label="Loading metrics…" /> : null}
      <ErrorNote error={state.error}>Metrics could not be loaded</ErrorNote>
      {!state.loading && !state.error && !state.available ? <NotAvailable what="Spend over time, jobs by state, success rate and queue depth" issue={5} /> : null}
      {state.available && state.data ? <MetricsBody data={state.data} /> : null}
    </div>
  );
}
