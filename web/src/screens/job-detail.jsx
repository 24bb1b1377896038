// One job: status, progress, charts, cost, timeline, log, config snapshot, data, artifacts; Cancel and Delete.
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api } from "../api.js";
import { LineChart } from "../charts.jsx";
import {
  ConfirmDialog,
  CopyButton,
  ErrorNote,
  Loading,
  Notice,
  ProgressBar,
  stageHint,
  StatusBadge,
  TabPanel,
  Tabs,
} from "../components.jsx";
import { feedIsLive, subscribe } from "../events.js";
import { ACTIVE, bytes, dateTime, duration, estimateOf, isTerminal, jobTitle, money, number, STATUS_LABELS } from "../format.js";
import { ProgressSeries } from "../logparse.js";
import { navigate } from "../router.js";
import { can, session } from "../session.js";
import { Artifacts } from "./artifacts.jsx";
import { LogView } from "./logview.jsx";
import { UploadSummary } from "./upload-summary.jsx";

const POLL_MS = 3000;

function ownedBy(job) {
  return !session.user || job.owner_id === (session.user.id || session.user.user_id);
}

function canAct(job, action) {
  return can(`job.${action}.all`) || (ownedBy(job) && can(`job.${action}.own`));
}

// The log and the progress series parsed from it, followed from an offset as it grows.
function useJobLog(jobId) {
  const [text, setText] = useState("");
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState(null);
  const [points, setPoints] = useState([]);
  const offset = useRef(0);
  const series = useRef(new ProgressSeries());
  const inFlight = useRef(false);
  const again = useRef(false);

  const fetchMore = useCallback(async () => {
    if (inFlight.current) {
      again.current = true;
      return;
    }
    inFlight.current = true;
    try {
      do {
        again.current = false;
        const reply = await api(`/api/cloud/jobs/${jobId}/logs`, { query: { offset: offset.current } });
        if (reply.next_offset < offset.current) {
          // The log was replaced (a job imported again): start over.
          offset.current = 0;
          series.current = new ProgressSeries();
          setText("");
          again.current = true;
          continue;
        }
        if (reply.logs) {
          const added = reply.logs;
          setText((current) => current + added);
          if (series.current.push(added)) setPoints(series.current.points());
        }
        offset.current = reply.next_offset;
        setError(null);
      } while (again.current);
    } catch (e) {
      setError(e);
    } finally {
      inFlight.current = false;
      setLoading(false);
    }
  }, [jobId]);

  return { text, loading, error, points, fetchMore, offset };
}

function Stat({ label, children, hint }) {
  return (
    <div class="stat">
      <div class="stat-label">{label}</div>
      <div class="stat-value">{children}</div>
      {hint ? <div class="stat-hint muted small">{hint}</div> : null}
    </div>
  );
}

function CostStat({ job }) {
  const estimate =
    estimateOf(job) ||
    (job.estimate_high_usd != null ? { low: job.estimate_low_usd, high: job.estimate_high_usd, expected: null } : null);
  let hint = null;
  if (estimate) {
    const range =
      estimate.low != null && estimate.high != null && estimate.low !== estimate.high
        ? `${money(estimate.low)}–${money(estimate.high)}`
        : money(estimate.expected ?? estimate.high ?? estimate.low);
    hint = `estimate ${range}`;
  }
  const budget = estimate && estimate.high ? Math.min(100, (100 * job.cost_usd) / estimate.high) : null;
  return (
    <Stat label={isTerminal(job.status) ? "Cost" : "Cost so far"} hint={hint}>
      <span data-testid="job-cost">{money(job.cost_usd)}</span>
      {budget !== null ? (
        <div class="meter" role="meter" aria-valuemin="0" aria-valuemax="100" aria-valuenow={Math.round(budget)} aria-label="Cost against the estimate">
          <div class={`meter-fill ${budget >= 100 ? "meter-over" : ""}`} style={{ width: `${budget}%` }} />
        </div>
      ) : null}
    </Stat>
  );
}

function Timeline({ events }) {
  if (!events || !events.length) return <p class="muted">No state changes recorded.</p>;
  return (
    <ol class="timeline">
      {events.map((event) => (
        <li class={`timeline-item timeline-${event.to_status}`}>
          <span class="timeline-dot" aria-hidden="true" />
          <div>
            <strong>{STATUS_LABELS[event.to_status] || event.to_status}</strong>
            <span class="muted"> · {dateTime(event.created_at)}</span>
            <div class="small">{event.cause}</div>
            {event.detail ? (
              <div class={`small ${event.to_status === "failed" ? "error-text" : "muted"}`}>{event.detail}</div>
            ) : null}
          </div>
        </li>
      ))}
    </ol>
  );
}

function Charts({ points }) {
  const loss = useMemo(() => {
    const rows = points.filter((p) => p.loss != null);
    return [rows.map((p) => p.step), rows.map((p) => p.loss)];
  }, [points]);
  const lr = useMemo(() => {
    const rows = points.filter((p) => p.lr != null);
    return [rows.map((p) => p.step), rows.map((p) => p.lr)];
  }, [points]);
  if (!loss[0].length && !lr[0].length)
    return <p class="muted">The loss and learning-rate charts appear once the trainer reports its first steps.</p>;
  return (
    <div class="charts">
      {loss[0].length ? <LineChart xs={loss[0]} ys={loss[1]} title="Loss" yLabel="loss" /> : null}
      {lr[0].length ? <LineChart xs={lr[0]} ys={lr[1]} title="Learning rate" yLabel="learning rate" color="--accent-2" /> : null}
    </div>
  );
}

function ConfigPanel({ job }) {
  const snapshot = job.config_snapshot || {};
  const entries = Object.entries(job.config || {});
  return (
    <div class="stack">
      <dl class="facts">
        <dt>Source</dt>
        <dd>{snapshot.source === "saved" ? `saved config “${snapshot.name}”` : snapshot.source || "—"}</dd>
        <dt>Commit</dt>
        <dd>
          {snapshot.commit ? (
            <span class="mono" title={snapshot.commit}>
              {snapshot.commit.slice(0, 12)}
            </span>
          ) : (
            "—"
          )}
          {snapshot.commit ? <span class="muted small"> in the data dir's config-history repository</span> : null}
        </dd>
        <dt>Fingerprint</dt>
        <dd class="mono small">{snapshot.sha256 ? snapshot.sha256.slice(0, 16) + "…" : "—"}</dd>
        {job.publishing ? (
          <>
            <dt>Publishing</dt>
            <dd class="mono small">
              {Object.entries(job.publishing)
                .filter(([k]) => !/secret|token|key$/i.test(k))
                .map(([k, v]) => `${k}=${v}`)
                .join(", ")}
            </dd>
          </>
        ) : null}
      </dl>
      <h3>Arguments</h3>
      <div class="table-wrap">
        <table class="data-table config-table">
          <caption class="visually-hidden">Training arguments</caption>
          <tbody>
            {entries.map(([key, value]) => (
              <tr>
                <th scope="row" class="mono">{key}</th>
                <td class="mono">{typeof value === "object" ? JSON.stringify(value) : String(value)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h3>Datasets</h3>
      {(job.dataloader_config || []).map((dataset) => (
        <div class="dataset">
          <strong>{dataset.id}</strong> <span class="muted">({dataset.type}{dataset.dataset_type ? `, ${dataset.dataset_type}` : ""})</span>
          <div class="mono small">{dataset.instance_data_dir || dataset.cache_dir || ""}</div>
          <div class="small muted">
            {[dataset.caption_strategy && `captions: ${dataset.caption_strategy}`, dataset.resolution && `resolution ${dataset.resolution}`]
              .filter(Boolean)
              .join(" · ")}
          </div>
        </div>
      ))}
      <h3>Upload</h3>
      {job.upload_summary ? (
        <UploadSummary summary={job.upload_summary} />
      ) : (
        <p class="muted">Nothing was uploaded from this machine for this job.</p>
      )}
    </div>
  );
}

function SubmitWarnings({ jobId }) {
  const [warnings] = useState(() => {
    const key = `cloudtuner-warnings:${jobId}`;
    const stored = sessionStorage.getItem(key);
    sessionStorage.removeItem(key);
    return stored ? JSON.parse(stored) : [];
  });
  if (!warnings.length) return null;
  return (
    <Notice kind="warning" title="Submitted, with a warning">
      {warnings.map((w) => <div>{w}</div>)}
    </Notice>
  );
}

export function JobDetail({ jobId, route }) {
  const [job, setJob] = useState(null);
  const [error, setError] = useState(null);
  const [tab, setTab] = useState(route.params.get("tab") || "overview");
  const [confirm, setConfirm] = useState(null); // "cancel" | "delete"
  const [busy, setBusy] = useState(false);
  const [actionError, setActionError] = useState(null);
  const log = useJobLog(jobId);
  const jobRef = useRef(null);
  jobRef.current = job;

  const loadJob = useCallback(async () => {
    try {
      const reply = await api(`/api/cloud/jobs/${jobId}`);
      setJob(reply.job);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, [jobId]);

  useEffect(() => {
    setJob(null);
    loadJob();
    log.fetchMore();
  }, [jobId]);

  // Live: state changes reload the job (its timeline); updates merge in and pull new log text.
  useEffect(
    () =>
      subscribe((type, data) => {
        if (data.job_id !== jobId) return;
        if (type === "status") {
          loadJob();
          log.fetchMore();
        } else if (type === "update") {
          setJob((current) => (current ? { ...current, ...data.job } : current));
          if (data.log_length > log.offset.current) log.fetchMore();
        }
      }),
    [jobId],
  );

  // Without the live feed, poll while the job is active.
  useEffect(() => {
    const timer = setInterval(() => {
      const current = jobRef.current;
      if (feedIsLive() || document.hidden || !current || isTerminal(current.status)) return;
      loadJob();
      log.fetchMore();
    }, POLL_MS);
    return () => clearInterval(timer);
  }, [jobId]);

  const act = async () => {
    setBusy(true);
    setActionError(null);
    try {
      if (confirm === "cancel") {
        await api(`/api/cloud/jobs/${jobId}/cancel`, { method: "POST" });
        await loadJob();
      } else {
        await api(`/api/cloud/jobs/${jobId}`, { method: "DELETE" });
        navigate("/");
      }
      setConfirm(null);
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(false);
    }
  };

  if (error && !job)
    return (
      <div>
        <p><a href="#/">← All jobs</a></p>
        <ErrorNote error={error}>This job could not be loaded</ErrorNote>
      </div>
    );
  if (!job) return <Loading label="Loading the job…" />;

  const p = job.progress || {};
  const active = ACTIVE.includes(job.status);
  const tabs = [
    { id: "overview", label: "Overview" },
    { id: "logs", label: "Logs" },
    { id: "config", label: "Config & data" },
    { id: "artifacts", label: "Artifacts" },
  ];

  return (
    <div class="job-detail">
      <p class="breadcrumb"><a href="#/">← All jobs</a></p>
      <div class="page-head">
        <div>
          <h1 class="job-title">{jobTitle(job)}</h1>
          <div class="job-meta">
            <StatusBadge status={job.status} cancelRequested={job.cancel_requested} />
            <span class="muted">
              {job.provider}
              {job.hardware ? ` · ${job.hardware}` : ""} · created {dateTime(job.created_at)}
            </span>
          </div>
          <div class="muted small">
            Job <span class="mono">{job.job_id}</span> <CopyButton text={job.job_id} label="Copy id" />
            {job.provider_job_id ? <> · run <span class="mono">{job.provider_job_id}</span></> : null}
          </div>
        </div>
        <div class="page-actions">
          <button type="button" class="button" onClick={() => setTab("logs")}>
            View Logs
          </button>
          {active && canAct(job, "cancel") ? (
            <button type="button" class="button button-danger" onClick={() => setConfirm("cancel")} disabled={job.cancel_requested}>
              {job.cancel_requested ? "Cancelling…" : "Cancel"}
            </button>
          ) : null}
          {isTerminal(job.status) && canAct(job, "delete") ? (
            <button type="button" class="button button-danger" onClick={() => setConfirm("delete")}>
              Delete
            </button>
          ) : null}
        </div>
      </div>
      {job.error ? <Notice kind="error" title="The job failed">{job.error}</Notice> : null}
      <SubmitWarnings jobId={jobId} />

      <div class="stats">
        <Stat label="Progress" hint={stageHint(p)}>
          <ProgressBar progress={job.progress} status={job.status} />
        </Stat>
        <Stat label="Loss">{number(p.loss)}</Stat>
        <Stat label="Learning rate">{number(p.learning_rate)}</Stat>
        <CostStat job={job} />
        <Stat label="Run time">{duration(job.duration_seconds)}</Stat>
      </div>

      <Tabs tabs={tabs} current={tab} onChange={setTab} label="Job details" />
      {tab === "overview" ? (
        <TabPanel id="overview">
          <div class="grid-2">
            <section aria-labelledby="charts-title" class="card">
              <h2 id="charts-title">Training curves</h2>
              <Charts points={log.points} />
            </section>
            <section aria-labelledby="timeline-title" class="card">
              <h2 id="timeline-title">Timeline</h2>
              <Timeline events={job.events} />
            </section>
          </div>
        </TabPanel>
      ) : null}
      {tab === "logs" ? (
        <TabPanel id="logs">
          <ErrorNote error={log.error}>The log could not be read</ErrorNote>
          <LogView text={log.text} loading={log.loading} active={active} />
        </TabPanel>
      ) : null}
      {tab === "config" ? (
        <TabPanel id="config">
          <ConfigPanel job={job} />
        </TabPanel>
      ) : null}
      {tab === "artifacts" ? (
        <TabPanel id="artifacts">
          <Artifacts job={job} />
        </TabPanel>
      ) : null}

      <ConfirmDialog
        open={confirm !== null}
        title={confirm === "cancel" ? "Cancel this job?" : "Delete this job?"}
        message={
          confirm === "cancel"
            ? "The provider is asked to stop the run. You pay for the time it has used so far."
            : "The job, its timeline and its logs are deleted from this server. Delivered models stay where they are."
        }
        confirmLabel={confirm === "cancel" ? "Cancel job" : "Delete job"}
        danger
        busy={busy}
        error={actionError}
        onConfirm={act}
        onClose={() => {
          setConfirm(null);
          setActionError(null);
        }}
      />
    </div>
  );
}
