// The Cloud tab: every job (cloud, worker, local) in one list, live, with filters, search and paging.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorNote, Loading, Notice, ProgressBar, StatusBadge, useTick } from "../components.jsx";
import { feedIsLive, subscribe } from "../events.js";
import { ACTIVE, age, duration, jobTitle, money } from "../format.js";
import { navigate, replaceParams } from "../router.js";
import { can } from "../session.js";

const PAGE_SIZE = 50;
const POLL_MS = 5000;

export const STATUS_FILTERS = [
  { id: "", label: "All" },
  { id: "active", label: "Active", statuses: ACTIVE },
  { id: "queued", label: "Queued", statuses: ["pending_approval", "queued"] },
  { id: "running", label: "Running", statuses: ["uploading", "starting", "running"] },
  { id: "completed", label: "Completed", statuses: ["completed"] },
  { id: "failed", label: "Failed", statuses: ["failed"] },
  { id: "cancelled", label: "Cancelled", statuses: ["cancelled"] },
];

function statusesFor(filterId) {
  const filter = STATUS_FILTERS.find((f) => f.id === filterId);
  return filter && filter.statuses ? filter.statuses : null;
}

function matches(job, filters) {
  const statuses = statusesFor(filters.status);
  if (statuses && !statuses.includes(job.status)) return false;
  if (filters.provider && job.provider !== filters.provider) return false;
  return true;
}

function useDebounced(value, ms) {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setDebounced(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return debounced;
}

function GettingStarted() {
  return (
    <section class="card getting-started" aria-labelledby="start-title">
      <h2 id="start-title">Train your first model in the cloud</h2>
      <ol class="steps">
        <li>
          <strong>Connect a provider.</strong> Open <a href="#/settings">Settings</a>, paste your Replicate API token
          (it starts with <code>r8_</code>) and press <em>Validate</em>.
        </li>
        <li>
          <strong>Describe the training.</strong> In <a href="#/train">Train in Cloud</a>, start from a Flux, SDXL or SD3
          LoRA preset and point the dataloader at your captioned images.
        </li>
        <li>
          <strong>Review and submit.</strong> Check the upload summary and the cost estimate, then press{" "}
          <em>Submit</em>. The job appears here with its progress, loss, logs and cost, live.
        </li>
      </ol>
      {can("job.submit") ? (
        <a class="button button-primary" href="#/train">
          Train in Cloud
        </a>
      ) : null}
    </section>
  );
}

function JobRow({ job, now }) {
  const open = () => navigate(`/jobs/${job.job_id}`);
  return (
    <tr
      class="job-row"
      data-job-id={job.job_id}
      onClick={(event) => {
        if (event.target.closest("a, button")) return;
        open();
      }}
    >
      <td data-label="Status">
        <StatusBadge status={job.status} cancelRequested={job.cancel_requested} />
      </td>
      <td data-label="Run" class="cell-run">
        <a href={`#/jobs/${job.job_id}`} class="job-link">
          {jobTitle(job)}
        </a>
        <div class="muted small">
          {job.config_name && job.tracker_run_name ? `${job.config_name} · ` : ""}
          <span class="mono">{job.job_id.slice(-8)}</span>
        </div>
        {job.error ? <div class="error-text small" title={job.error}>{job.error.slice(0, 120)}</div> : null}
      </td>
      <td data-label="Progress" class="cell-progress">
        <ProgressBar progress={job.progress} status={job.status} compact />
      </td>
      <td data-label="Cost" class="cell-num">
        {money(job.cost_usd)}
        {job.duration_seconds != null ? <div class="muted small">{duration(job.duration_seconds)}</div> : null}
      </td>
      <td data-label="Provider">
        {job.provider}
        {job.hardware ? <div class="muted small">{job.hardware}</div> : null}
      </td>
      <td data-label="Age" class="cell-age">
        <time datetime={job.created_at} title={job.created_at}>
          {age(job.created_at, now)}
        </time>
      </td>
    </tr>
  );
}

export function JobList({ route }) {
  const params = route.params;
  const [status, setStatus] = useState(params.get("status") || "");
  const [provider, setProvider] = useState(params.get("provider") || "");
  const [search, setSearch] = useState(params.get("q") || "");
  const query = useDebounced(search.trim(), 300);
  const [providers, setProviders] = useState([]);
  const [cursors, setCursors] = useState([null]); // cursor of each page seen; the last is the current page
  const [page, setPage] = useState({ jobs: null, next_cursor: null });
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(true);
  const [syncing, setSyncing] = useState(false);
  const [syncNote, setSyncNote] = useState(null);
  const now = useTick(30000);
  const filters = { status, provider, q: query };
  const filtersRef = useRef(filters);
  filtersRef.current = filters;
  const cursor = cursors[cursors.length - 1];
  const requestId = useRef(0);

  useEffect(() => {
    api("/api/health")
      .then((h) => setProviders(h.providers || []))
      .catch(() => setProviders([]));
  }, []);

  const load = useCallback(
    async ({ quiet } = {}) => {
      performance.mark("cloudtuner:jobs-load");
      const id = ++requestId.current;
      if (!quiet) setLoading(true);
      try {
        const common = { limit: PAGE_SIZE, status: statusesFor(status)?.join(","), provider, cursor };
        const reply = query
          ? await api("/api/cloud/search/jobs", { query: { ...common, q: query } })
          : await api("/api/cloud/jobs", { query: common });
        if (id !== requestId.current) return;
        performance.mark("cloudtuner:jobs-reply");
        setPage(reply);
        setError(null);
      } catch (e) {
        if (id === requestId.current) setError(e);
      } finally {
        if (id === requestId.current) setLoading(false);
      }
    },
    [status, provider, query, cursor],
  );

  useEffect(() => {
    replaceParams({ status, provider, q: query });
  }, [status, provider, query]);
  useEffect(() => setCursors([null]), [status, provider, query]);
  useEffect(() => {
    load();
  }, [load]);

  // Live updates: change rows in place; new jobs appear on the first page. Messages that arrive
  // together are applied in one render.
  useEffect(() => {
    let pending = [];
    let timer = null;
    const flush = () => {
      timer = null;
      const batch = pending;
      pending = [];
      setPage((current) => {
        if (!current.jobs) return current;
        let jobs = current.jobs;
        const f = filtersRef.current;
        const firstPage = cursors.length === 1;
        for (const [type, data] of batch) {
          const job = data.job;
          const index = jobs.findIndex((j) => j.job_id === job.job_id);
          if (index >= 0) {
            if (jobs === current.jobs) jobs = jobs.slice();
            jobs[index] = { ...jobs[index], ...job };
          } else if (type === "status" && data.from_status == null && firstPage && !f.q && matches(job, f)) {
            jobs = [job, ...jobs]; // the page keeps its cursor: nothing is skipped
          }
        }
        return jobs === current.jobs ? current : { ...current, jobs };
      });
    };
    const unsubscribe = subscribe((type, data) => {
      if ((type !== "status" && type !== "update") || !data.job) return;
      pending.push([type, data]);
      if (!timer) timer = setTimeout(flush, 50);
    });
    return () => {
      unsubscribe();
      if (timer) clearTimeout(timer);
    };
  }, [cursors.length]);

  // Without the live feed, refresh while jobs are active.
  useEffect(() => {
    const timer = setInterval(() => {
      if (feedIsLive() || document.hidden) return;
      if ((page.jobs || []).some((j) => ACTIVE.includes(j.status)) || cursors.length === 1) load({ quiet: true });
    }, POLL_MS);
    return () => clearInterval(timer);
  }, [load, page, cursors.length]);

  const syncNow = async () => {
    setSyncing(true);
    setSyncNote(null);
    try {
      const reply = await api("/api/cloud/jobs/sync", { method: "POST" });
      setSyncNote(
        `Read ${reply.synced} active job${reply.synced === 1 ? "" : "s"} from their providers` +
          (reply.imported ? `, imported ${reply.imported}` : "") +
          (reply.errors && reply.errors.length ? `; problems: ${reply.errors.join("; ")}` : "."),
      );
      await load({ quiet: true });
    } catch (e) {
      setSyncNote(e.message);
    } finally {
      setSyncing(false);
    }
  };

  const jobs = page.jobs || [];
  const filtered = Boolean(status || provider || query);
  const pageNumber = cursors.length;

  return (
    <div class="jobs-screen">
      <div class="page-head">
        <h1>Jobs</h1>
        <div class="page-actions">
          {can("job.sync") ? (
            <button type="button" class="button" onClick={syncNow} disabled={syncing}>
              {syncing ? "Syncing…" : "Sync now"}
            </button>
          ) : null}
          {can("job.submit") ? (
            <a class="button button-primary" href="#/train">
              Train in Cloud
            </a>
          ) : null}
        </div>
      </div>
      {syncNote ? <Notice>{syncNote}</Notice> : null}

      <form class="filters" role="search" aria-label="Filter jobs" onSubmit={(e) => e.preventDefault()}>
        <div class="segmented" role="group" aria-label="Status">
          {STATUS_FILTERS.map((f) => (
            <button
              type="button"
              class={`segment ${status === f.id ? "segment-on" : ""}`}
              aria-pressed={status === f.id ? "true" : "false"}
              onClick={() => setStatus(f.id)}
            >
              {f.label}
            </button>
          ))}
        </div>
        <div class="filters-row">
          <label class="inline-field">
            <span>Provider</span>
            <select value={provider} onChange={(e) => setProvider(e.target.value)}>
              <option value="">All providers</option>
              {providers.map((p) => (
                <option value={p}>{p}</option>
              ))}
            </select>
          </label>
          <label class="inline-field grow">
            <span>Search</span>
            <input
              type="search"
              placeholder="Run name, config, job id…"
              value={search}
              onInput={(e) => setSearch(e.target.value)}
            />
          </label>
        </div>
      </form>

      <ErrorNote error={error}>The job list could not be loaded</ErrorNote>
      {page.jobs === null && loading ? <Loading label="Loading jobs…" /> : null}
      {page.window_ended && !loading ? (
        <Notice>
          {jobs.length ? "No more matches" : "No match"} among the {(page.window_size || 0).toLocaleString()}{" "}
          {pageNumber === 1 ? "newest" : "next"} jobs looked through.{" "}
          <button type="button" class="button button-small" onClick={() => setCursors((c) => [...c, page.next_cursor])}>
            Search older jobs
          </button>
        </Notice>
      ) : null}
      {page.jobs !== null && jobs.length === 0 && !loading && !page.window_ended ? (
        filtered ? (
          <Notice>No job matches these filters.</Notice>
        ) : pageNumber === 1 ? (
          <GettingStarted />
        ) : (
          <Notice>No more jobs.</Notice>
        )
      ) : null}
      {jobs.length ? (
        <div class="table-wrap" aria-busy={loading ? "true" : "false"}>
          <table class="jobs-table phone-cards">
            <caption class="visually-hidden">Jobs, newest first{filtered ? " (filtered)" : ""}</caption>
            <thead>
              <tr>
                <th scope="col">Status</th>
                <th scope="col">Run</th>
                <th scope="col">Progress</th>
                <th scope="col" class="cell-num">Cost</th>
                <th scope="col">Provider</th>
                <th scope="col">Age</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((job) => (
                <JobRow key={job.job_id} job={job} now={now} />
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {jobs.length || pageNumber > 1 ? (
        <nav class="pager" aria-label="Pages">
          <button
            type="button"
            class="button"
            disabled={pageNumber === 1 || loading}
            onClick={() => setCursors((c) => c.slice(0, -1))}
          >
            ← Newer
          </button>
          <span class="muted">Page {pageNumber}</span>
          <button
            type="button"
            class="button"
            disabled={!page.next_cursor || loading}
            onClick={() => setCursors((c) => [...c, page.next_cursor])}
          >
            Older →
          </button>
        </nav>
      ) : null}
    </div>
  );
}
