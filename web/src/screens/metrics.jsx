// Metrics (GET /api/metrics): spend over time (in all, per provider, per hardware), jobs by state,
// success rate, and the queue's depth (GET /api/queue when the user may see it). Spend through
// this server per provider (the billing routes) and the spending limits are shown too.
//
// /api/metrics gives spend per day in all, and spend per provider and per hardware over the whole
// range. Per provider over time: one call per provider (`?provider=`, which has `spend_by_day`).
// Per hardware over time: the range cut into at most HARDWARE_SLICES slices, one call each
// (`?since=&until=`, which has `spend_by_hardware`); asked for only when that view is chosen.
import { useEffect, useState } from "preact/hooks";
import { api, optional } from "../api.js";
import { LineChart } from "../charts.jsx";
import { ErrorNote, Loading, NotAvailable, Section } from "../components.jsx";
import { STATUS_LABELS, duration, money, number } from "../format.js";
import { useResource } from "../resource.js";
import { can } from "../session.js";
import { CostLimitStatus, useCostLimit } from "./cost-limit.jsx";

const RANGES = [["7", "7 days"], ["30", "30 days"], ["90", "90 days"]];
const SPEND_VIEWS = [["total", "In all"], ["provider", "Per provider"], ["hardware", "Per hardware"]];
const HARDWARE_SLICES = 15;
const MAX_SERIES = 6; // the rest are summed as "other"

function BarList({ entries, format = (v) => v, label }) {
  const max = Math.max(0, ...entries.map(([, v]) => Number(v) || 0)) || 1;
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

const dayStart = (key) => new Date(`${key}T00:00:00Z`).getTime() / 1000;

// Keep the biggest series; sum the others into one called "other".
function topSeries(series) {
  const total = (s) => s.ys.reduce((a, b) => a + b, 0);
  const sorted = [...series].sort((a, b) => total(b) - total(a));
  if (sorted.length <= MAX_SERIES) return sorted;
  const rest = sorted.slice(MAX_SERIES - 1);
  const other = { label: "other", ys: rest[0].ys.map((_, i) => rest.reduce((sum, s) => sum + s.ys[i], 0)) };
  return [...sorted.slice(0, MAX_SERIES - 1), other];
}

async function perProvider(data, days) {
  const providers = data.spend_by_provider.map((b) => b.key);
  const replies = await Promise.all(providers.map((provider) => api("/api/metrics", { query: { days, provider } })));
  const xs = data.spend_by_day.map((d) => dayStart(d.key));
  const series = replies.map((reply, i) => {
    const byDay = new Map(reply.spend_by_day.map((d) => [d.key, d.spent_usd]));
    return { label: providers[i], ys: data.spend_by_day.map((d) => byDay.get(d.key) || 0) };
  });
  return { xs, series: topSeries(series), note: "per day" };
}

async function perHardware(data) {
  const since = new Date(data.since).getTime();
  const until = new Date(data.until).getTime();
  const days = Math.max(1, Math.ceil((until - since) / 86400000));
  const slices = Math.min(HARDWARE_SLICES, days);
  const step = (until - since) / slices;
  const bounds = Array.from({ length: slices }, (_, i) => [since + i * step, i === slices - 1 ? until : since + (i + 1) * step]);
  const replies = await Promise.all(
    bounds.map(([a, b]) =>
      api("/api/metrics", { query: { since: new Date(a).toISOString(), until: new Date(Math.round(b)).toISOString() } }),
    ),
  );
  const keys = data.spend_by_hardware.map((b) => b.key);
  const series = keys.map((key) => ({
    label: key,
    ys: replies.map((reply) => (reply.spend_by_hardware.find((b) => b.key === key) || { spent_usd: 0 }).spent_usd),
  }));
  const sliceDays = Math.round((step / 86400000) * 10) / 10;
  return {
    xs: bounds.map(([a]) => a / 1000),
    series: topSeries(series),
    note: sliceDays === 1 ? "per day" : `per ${sliceDays} days`,
  };
}

function SpendOverTime({ data, days }) {
  const [view, setView] = useState("total");
  const [split, setSplit] = useState({ loading: false });
  useEffect(() => {
    if (view === "total") return undefined;
    let cancelled = false;
    setSplit({ loading: true });
    (view === "provider" ? perProvider(data, days) : perHardware(data))
      .then((chart) => !cancelled && setSplit({ loading: false, chart }))
      .catch((error) => !cancelled && setSplit({ loading: false, error }));
    return () => {
      cancelled = true;
    };
  }, [view, data]);
  const days_ = data.spend_by_day;
  const picker = (
    <div class="segmented" role="group" aria-label="Spend shown">
      {SPEND_VIEWS.map(([id, label]) => (
        <button type="button" class={`segment ${view === id ? "segment-on" : ""}`} aria-pressed={view === id ? "true" : "false"} onClick={() => setView(id)}>
          {label}
        </button>
      ))}
    </div>
  );
  let body;
  if (view === "total") {
    body =
      days_.length > 1 ? (
        <LineChart xs={days_.map((d) => dayStart(d.key))} ys={days_.map((d) => d.spent_usd)} title="Spend per day" yLabel="US dollars" time format={(v) => money(v)} />
      ) : (
        <p class="muted">Not enough days yet.</p>
      );
  } else if (split.loading) body = <Loading label="Loading spend…" />;
  else if (split.error) body = <ErrorNote error={split.error}>Spend could not be loaded</ErrorNote>;
  else if (split.chart && !split.chart.series.length) body = <p class="muted">No spend in this range.</p>;
  else if (split.chart)
    body = (
      <LineChart
        xs={split.chart.xs}
        series={split.chart.series}
        title={`Spend ${view === "provider" ? "per provider" : "per hardware"}, ${split.chart.note}`}
        time
        format={(v) => money(v)}
      />
    );
  return (
    <Section title="Spend over time" id="spend-over-time" actions={picker}>
      {body}
    </Section>
  );
}

function QueueDepth({ byStatus }) {
  const allowed = can("job.view.all", "queue.manage");
  const queue = useResource(allowed ? "/api/queue" : null, { poll: 10000 });
  const waiting = (byStatus.queued || 0) + (byStatus.pending_approval || 0);
  const live = queue.available && queue.data;
  return (
    <div class="stat">
      <div class="stat-label">Queue depth</div>
      <div class="stat-value" data-testid="queue-depth">
        {live ? queue.data.depth : waiting}
      </div>
      <div class="muted small">{live ? `${queue.data.running} running now` : "queued in this range"}</div>
    </div>
  );
}

function MetricsBody({ data, days }) {
  const byStatus = data.jobs_by_status;
  const providers = Object.entries(data.jobs_by_provider);
  const run = data.durations.average_run_seconds;
  const queued = data.durations.average_queue_seconds;
  const rate = data.success_rate;
  return (
    <>
      <div class="stats">
        <div class="stat">
          <div class="stat-label">Jobs</div>
          <div class="stat-value">{data.jobs_total}</div>
        </div>
        <div class="stat">
          <div class="stat-label">Success rate</div>
          <div class="stat-value" data-testid="success-rate">
            {rate == null ? "—" : `${number(rate * 100, 1)}%`}
          </div>
          <div class="muted small">{rate == null ? "no finished job yet" : `${byStatus.completed || 0} completed, ${byStatus.failed || 0} failed`}</div>
        </div>
        <div class="stat">
          <div class="stat-label">Spent</div>
          <div class="stat-value">{money(data.total_spent_usd)}</div>
        </div>
        <QueueDepth byStatus={byStatus} />
        <div class="stat">
          <div class="stat-label">Average run</div>
          <div class="stat-value">{run == null ? "—" : duration(run)}</div>
          {queued != null ? <div class="muted small">after {duration(queued)} waiting</div> : null}
        </div>
      </div>
      <SpendOverTime data={data} days={days} />
      <div class="grid-2">
        <Section title="Jobs by state">
          {Object.keys(byStatus).length ? <BarList entries={Object.entries(byStatus)} label="Jobs by state" /> : <p class="muted">No job in this range.</p>}
        </Section>
        <Section title="Spend by provider">
          {data.spend_by_provider.length ? (
            <BarList entries={data.spend_by_provider.map((b) => [b.key, b.spent_usd])} format={money} label="Spend by provider" />
          ) : (
            <p class="muted">No job in this range.</p>
          )}
          {providers.length ? (
            <p class="muted small">{providers.map(([p, states]) => `${p}: ${Object.values(states).reduce((a, b) => a + b, 0)} jobs`).join(" · ")}</p>
          ) : null}
        </Section>
        <Section title="Spend by hardware">
          {data.spend_by_hardware.length ? (
            <BarList entries={data.spend_by_hardware.map((b) => [b.key, b.spent_usd])} format={money} label="Spend by hardware" />
          ) : (
            <p class="muted">No job in this range.</p>
          )}
        </Section>
      </div>
    </>
  );
}

export function MetricsScreen() {
  const [days, setDays] = useState("30");
  const metrics = useResource("/api/metrics", { query: { days } });
  const [spend, setSpend] = useState([]);
  const limits = useCostLimit([]);
  useEffect(() => {
    api("/api/health")
      .then((h) => Promise.all(h.providers.map((p) => optional(`/api/cloud/providers/${p}/billing`).catch(() => null))))
      .then((replies) => setSpend(replies.filter((r) => r && r.available).map((r) => r.data)))
      .catch(() => setSpend([]));
  }, []);
  return (
    <div class="metrics-screen">
      <div class="page-head">
        <h1>Metrics</h1>
        <label class="inline-field">
          <span>Range</span>
          <select value={days} onChange={(e) => setDays(e.target.value)}>
            {RANGES.map(([id, label]) => (
              <option value={id}>{label}</option>
            ))}
          </select>
        </label>
      </div>
      {metrics.loading ? <Loading label="Loading metrics…" /> : null}
      <ErrorNote error={metrics.error}>Metrics could not be loaded</ErrorNote>
      {metrics.missing ? <NotAvailable what="Spend over time, jobs by state, success rate and queue depth" issue={5} /> : null}
      {metrics.available && metrics.data ? <MetricsBody data={metrics.data} days={days} /> : null}
      <div class="grid-2">
        <Section title="Spend through this server">
          {spend.length ? (
            <BarList entries={spend.map((s) => [s.provider, s.spent_usd])} format={money} label="Spend by provider, all time" />
          ) : (
            <p class="muted">No spend recorded yet.</p>
          )}
          <p class="muted small">This month: {spend.map((s) => `${s.provider} ${money(s.spent_this_month_usd)}`).join(", ") || "—"}</p>
        </Section>
        <Section title="Spending limits">
          <CostLimitStatus state={limits} />
        </Section>
      </div>
    </div>
  );
}
