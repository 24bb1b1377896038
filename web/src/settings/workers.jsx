// Self-hosted GPU workers (issue 7): create (token and command shown once), status, drain, remove.
import { useEffect, useState } from "preact/hooks";
import { api, optional } from "../api.js";
import { CopyButton, ErrorNote, Field, NotAvailable, Notice, Section } from "../components.jsx";
import { age } from "../format.js";

const BASE = "/api/admin/workers";

function workersOf(data) {
  return (data && (data.workers || data.items)) || (Array.isArray(data) ? data : []);
}

export function WorkersSection() {
  const [state, setState] = useState({ loading: true });
  const [name, setName] = useState("");
  const [labels, setLabels] = useState("");
  const [created, setCreated] = useState(null);
  const [error, setError] = useState(null);
  const load = () =>
    optional(BASE)
      .then((reply) => setState({ loading: false, ...reply }))
      .catch((e) => setState({ loading: false, error: e }));
  useEffect(() => {
    load();
    const timer = setInterval(load, 10000);
    return () => clearInterval(timer);
  }, []);

  const create = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      const parsed = Object.fromEntries(
        labels
          .split(/[\s,]+/)
          .filter((p) => p.includes("="))
          .map((p) => p.split("=", 2)),
      );
      const reply = await api(BASE, { method: "POST", body: { name: name.trim(), labels: parsed } });
      setCreated(reply);
      setName("");
      setLabels("");
      load();
    } catch (e) {
      setError(e);
    }
  };
  const act = async (worker, action) => {
    setError(null);
    try {
      const id = encodeURIComponent(worker.worker_id || worker.id);
      if (action === "delete") await api(`${BASE}/${id}`, { method: "DELETE" });
      else await api(`${BASE}/${id}/${action}`, { method: "POST" });
      load();
    } catch (e) {
      setError(e);
    }
  };

  if (!state.loading && !state.error && !state.available)
    return (
      <Section title="Workers" id="workers">
        <NotAvailable what="Self-hosted GPU workers" issue={7} />
      </Section>
    );
  const workers = workersOf(state.data);
  return (
    <Section title="Workers" id="workers" description="Your own GPU machines. Jobs with provider “worker” run there.">
      <ErrorNote error={state.error || error} />
      <form onSubmit={create} class="inline-form">
        <Field label="Worker name">
          {(props) => <input {...props} required value={name} placeholder="gpu-box-1" onInput={(e) => setName(e.target.value)} />}
        </Field>
        <Field label="Labels" hint="key=value, separated by spaces: gpu=a100 site=lab">
          {(props) => <input {...props} value={labels} onInput={(e) => setLabels(e.target.value)} />}
        </Field>
        <button type="submit" class="button button-primary" disabled={!name.trim()}>
          Create worker
        </button>
      </form>
      {created ? (
        <Notice kind="success" title="Run this on the GPU machine (the token is not shown again)">
          <div class="secret-row">
            <code class="secret">{created.command || `cloudtuner worker --orchestrator-url ${location.origin} --worker-token ${created.token}`}</code>
            <CopyButton text={created.command || `cloudtuner worker --orchestrator-url ${location.origin} --worker-token ${created.token}`} />
          </div>
        </Notice>
      ) : null}
      {workers.length ? (
        <div class="table-wrap">
          <table class="data-table">
            <caption class="visually-hidden">Workers</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">GPUs</th>
                <th scope="col">Current job</th>
                <th scope="col">Last heartbeat</th>
                <th scope="col"><span class="visually-hidden">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {workers.map((w) => (
                <tr>
                  <td>
                    {w.name}
                    <div class="muted small">{Object.entries(w.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ")}</div>
                  </td>
                  <td><span class={`badge badge-worker-${w.status}`}>{w.status}</span></td>
                  <td class="small">{(w.gpus || []).map((g) => `${g.name || g.model} ${g.vram_gib ? g.vram_gib + " GB" : ""}`).join(", ") || w.gpu_count || "—"}</td>
                  <td>{w.current_job_id ? <a href={`#/jobs/${w.current_job_id}`} class="mono">{w.current_job_id.slice(-8)}</a> : "—"}</td>
                  <td>{age(w.last_heartbeat_at)}</td>
                  <td class="row-actions">
                    {w.status !== "draining" && w.status !== "offline" ? (
                      <button type="button" class="button button-small" onClick={() => act(w, "drain")}>Drain</button>
                    ) : null}
                    <button type="button" class="button button-small button-danger" onClick={() => act(w, "delete")}>Remove</button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : state.available ? (
        <p class="muted">No worker yet.</p>
      ) : null}
    </Section>
  );
}
