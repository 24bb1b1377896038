// Self-hosted GPU workers (/api/admin/workers, worker.manage): create (its token and the command
// that starts it are shown once), status, current job and last heartbeat; drain or resume, a new
// token, delete. The whole section is shown only to those who hold worker.manage (settings.jsx).
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { ConfirmDialog, CopyButton, ErrorNote, Field, NotAvailable, Notice, Section, useTick } from "../components.jsx";
import { age, dateTime } from "../format.js";
import { useAction, useResource } from "../resource.js";

const BASE = "/api/admin/workers";
const NAME_PATTERN = /^[A-Za-z0-9._-]+$/;

export const WORKER_STATUS = {
  connecting: "Connecting",
  idle: "Idle",
  busy: "Busy",
  draining: "Draining",
  offline: "Offline",
  revoked: "Revoked",
};

// "gpu=a100 site=lab" (or comma-separated) -> {gpu: "a100", site: "lab"}; null when a part is not key=value.
export function parseLabels(text) {
  const labels = {};
  for (const part of text.split(/[\s,]+/).filter(Boolean)) {
    const at = part.indexOf("=");
    if (at < 1) return null;
    labels[part.slice(0, at)] = part.slice(at + 1);
  }
  return labels;
}

function gpusText(gpus) {
  if (!gpus || !gpus.length) return "—";
  const counts = new Map();
  for (const g of gpus) {
    const key = `${g.name}${g.memory_mb ? ` (${Math.round(g.memory_mb / 1024)} GB)` : ""}`;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  return [...counts.entries()].map(([key, n]) => (n > 1 ? `${n}× ${key}` : key)).join(", ");
}

// The token and command of a created (or re-keyed) worker: in this reply only.
function NewToken({ reply, rotated, onDismiss }) {
  return (
    <Notice
      kind="success"
      title={`${rotated ? "New token for" : "Worker created:"} ${reply.worker.name}. Copy it now: it is not shown again`}
    >
      <p class="small">Run this on the GPU machine:</p>
      <div class="secret-row">
        <code class="secret" data-testid="worker-command">{reply.command}</code>
        <CopyButton text={reply.command} label="Copy command" />
      </div>
      <div class="secret-row">
        <span>Token</span>
        <code class="secret" data-testid="worker-token">{reply.token}</code>
        <CopyButton text={reply.token} label="Copy token" />
      </div>
      {rotated ? <p class="muted small">The old token has stopped working.</p> : null}
      <button type="button" class="button button-small" onClick={onDismiss}>
        Done
      </button>
    </Notice>
  );
}

export function WorkersSection() {
  const workers = useResource(BASE, { poll: 5000 });
  const action = useAction();
  const [name, setName] = useState("");
  const [labels, setLabels] = useState("");
  const [shown, setShown] = useState(null); // {reply, rotated}
  const [removing, setRemoving] = useState(null);
  useTick(15000);

  if (workers.missing)
    return (
      <Section title="Workers" id="workers">
        <NotAvailable what="Self-hosted GPU workers" issue={7} />
      </Section>
    );

  const parsedLabels = parseLabels(labels);
  const nameError = name && !NAME_PATTERN.test(name.trim()) ? "Letters, digits, dots, dashes and underscores only." : null;
  const labelsError = parsedLabels ? null : "Write labels as key=value, separated by spaces.";
  const create = (event) => {
    event.preventDefault();
    setShown(null);
    action.run(() => api(BASE, { method: "POST", body: { name: name.trim(), labels: parsedLabels } }), {
      name: "create",
      then: (reply) => {
        setShown({ reply, rotated: false });
        setName("");
        setLabels("");
        return workers.reload();
      },
    });
  };
  const path = (worker, tail = "") => `${BASE}/${encodeURIComponent(worker.worker_id)}${tail}`;
  const post = (worker, verb) =>
    action.run(() => api(path(worker, `/${verb}`), { method: "POST" }), { name: `${verb}:${worker.worker_id}`, then: workers.reload });
  const rotate = (worker) => {
    setShown(null);
    action.run(() => api(path(worker, "/rotate"), { method: "POST" }), {
      name: `rotate:${worker.worker_id}`,
      then: (reply) => {
        setShown({ reply, rotated: true });
        return workers.reload();
      },
    });
  };
  const remove = () =>
    action.run(() => api(path(removing), { method: "DELETE" }), {
      name: "delete",
      then: () => {
        if (shown && shown.reply.worker_id === removing.worker_id) setShown(null);
        setRemoving(null);
        return workers.reload();
      },
    });

  const list = (workers.data && workers.data.workers) || [];
  return (
    <Section title="Workers" id="workers" description="Your own GPU machines. Jobs sent to the provider “worker” run there.">
      <ErrorNote error={workers.error}>Workers could not be loaded</ErrorNote>
      <form onSubmit={create} class="inline-form" aria-label="New worker">
        <Field label="Worker name" error={nameError}>
          {(props) => <input {...props} required maxLength={255} value={name} placeholder="gpu-box-1" onInput={(e) => setName(e.target.value)} />}
        </Field>
        <Field label="Labels" hint="Optional, key=value separated by spaces: gpu=a100 site=lab" error={labelsError}>
          {(props) => <input {...props} value={labels} onInput={(e) => setLabels(e.target.value)} />}
        </Field>
        <button type="submit" class="button button-primary" disabled={!name.trim() || nameError || labelsError || action.busy}>
          {action.busy === "create" ? "Creating…" : "Create worker"}
        </button>
      </form>
      {!removing ? <ErrorNote error={action.error} /> : null}
      {shown ? <NewToken reply={shown.reply} rotated={shown.rotated} onDismiss={() => setShown(null)} /> : null}
      {list.length ? (
        <div class="table-wrap">
          <table class="data-table workers-table phone-cards">
            <caption class="visually-hidden">Workers</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">GPUs</th>
                <th scope="col">Current job</th>
                <th scope="col">Last heartbeat</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((w) => {
                const busy = action.busy && String(action.busy).endsWith(`:${w.worker_id}`);
                const labelText = Object.entries(w.labels || {})
                  .map(([k, v]) => `${k}=${v}`)
                  .join(" ");
                return (
                  <tr data-worker-id={w.worker_id}>
                    <td data-label="Name">
                      <strong>{w.name}</strong>
                      {labelText ? <div class="muted small mono">{labelText}</div> : null}
                      {w.hostname ? <div class="muted small">on {w.hostname}</div> : null}
                    </td>
                    <td data-label="Status">
                      <span class={`badge badge-worker-${w.status}`} data-status={w.status}>
                        <span class="badge-dot" aria-hidden="true" />
                        {WORKER_STATUS[w.status] || w.status}
                      </span>
                    </td>
                    <td data-label="GPUs" class="small">{gpusText(w.gpus)}</td>
                    <td data-label="Current job">
                      {w.current_job_id ? (
                        <a href={`#/jobs/${w.current_job_id}`} class="mono">
                          {w.current_job_id}
                        </a>
                      ) : (
                        "—"
                      )}
                    </td>
                    <td data-label="Last heartbeat">
                      {w.last_heartbeat_at ? <span title={dateTime(w.last_heartbeat_at)}>{age(w.last_heartbeat_at)}</span> : "never"}
                    </td>
                    <td>
                      <div class="row-actions">
                        {w.status === "draining" ? (
                          <button type="button" class="button button-small" disabled={busy} onClick={() => post(w, "undrain")} aria-label={`Resume ${w.name}`}>
                            Resume
                          </button>
                        ) : w.status !== "revoked" ? (
                          <button type="button" class="button button-small" disabled={busy} onClick={() => post(w, "drain")} aria-label={`Drain ${w.name}`}>
                            Drain
                          </button>
                        ) : null}
                        <button type="button" class="button button-small" disabled={busy} onClick={() => rotate(w)} aria-label={`New token for ${w.name}`}>
                          New token
                        </button>
                        <button
                          type="button"
                          class="button button-small button-danger"
                          disabled={busy}
                          onClick={() => {
                            action.clear();
                            setRemoving(w);
                          }}
                          aria-label={`Delete ${w.name}`}
                        >
                          Delete
                        </button>
                      </div>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : workers.available ? (
        <p class="muted">No worker yet. Create one, then run the command it shows on your GPU machine.</p>
      ) : null}
      <ConfirmDialog
        open={Boolean(removing)}
        title="Delete this worker?"
        message={
          removing
            ? `${removing.name} will be deleted and its token stops working.${removing.current_job_id ? ` Its job ${removing.current_job_id} goes back to the queue.` : ""}`
            : ""
        }
        confirmLabel="Delete worker"
        danger
        busy={action.busy === "delete"}
        error={removing ? action.error : null}
        onConfirm={remove}
        onClose={() => {
          setRemoving(null);
          action.clear();
        }}
      />
    </Section>
  );
}
