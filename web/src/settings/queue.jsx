// Queue limits (issue 7: GET /api/queue, PUT /api/queue/limits).
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorNote, Field, NotAvailable, Notice, Section } from "../components.jsx";
import { useAction, useResource } from "../resource.js";
import { can } from "../session.js";

const LIMIT_FIELDS = [
  ["max_concurrent", "Jobs running at once (all)"],
  ["max_concurrent_per_user", "Per user"],
  ["max_concurrent_per_team", "Per team"],
  ["max_concurrent_per_provider", "Per provider"],
  ["max_queued_per_user", "Queued jobs per user"],
];

export function QueueSection() {
  const queue = useResource("/api/queue");
  const action = useAction();
  const [edits, setEdits] = useState({});
  if (queue.missing)
    return (
      <Section title="Queue" id="queue">
        <NotAvailable what="The queue and its limits" issue={7} />
      </Section>
    );
  const limits = { ...((queue.data && queue.data.limits) || {}), ...edits };
  const save = (event) => {
    event.preventDefault();
    const body = Object.fromEntries(
      Object.entries(edits).map(([k, v]) => [k, v === "" || v === null ? null : typeof v === "number" ? v : Number(v)]),
    );
    action.run(() => api("/api/queue/limits", { method: "PUT", body }), {
      note: "Saved.",
      then: () => {
        setEdits({});
        return queue.reload();
      },
    });
  };
  const data = queue.data || {};
  const keys = [...new Set([...LIMIT_FIELDS.map(([k]) => k), ...Object.keys(limits).filter((k) => typeof limits[k] !== "object")])];
  const labelOf = (key) => (LIMIT_FIELDS.find(([k]) => k === key) || [key, key.replaceAll("_", " ")])[1];
  return (
    <Section title="Queue" id="queue">
      <ErrorNote error={queue.error}>The queue could not be loaded</ErrorNote>
      {data.depth !== undefined || data.queued !== undefined ? (
        <p>
          {data.depth ?? data.queued} queued{data.running !== undefined ? `, ${data.running} running` : ""}.
        </p>
      ) : null}
      <form onSubmit={save} class="stack">
        <fieldset class="bare" disabled={!can("queue.manage")}>
          <div class="form-grid">
            {keys.map((key) => (
              <Field label={labelOf(key)} hint="Blank: no limit.">
                {(props) => <input {...props} inputMode="numeric" value={limits[key] ?? ""} onInput={(e) => setEdits({ ...edits, [key]: e.target.value })} />}
              </Field>
            ))}
          </div>
          {can("queue.manage") ? (
            <button type="submit" class="button" disabled={action.busy || !Object.keys(edits).length}>
              Save limits
            </button>
          ) : null}
        </fieldset>
      </form>
      {action.note ? <Notice kind="success">{action.note}</Notice> : null}
      <ErrorNote error={action.error}>Not saved</ErrorNote>
    </Section>
  );
}
