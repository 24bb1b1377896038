// Queue limits (issue 7: GET /api/queue, PUT /api/queue/limits).
import { useEffect, useState } from "preact/hooks";
import { api, optional } from "../api.js";
import { ErrorNote, Field, NotAvailable, Notice, Section } from "../components.jsx";
import { can } from "../session.js";

const LIMIT_FIELDS = [
  ["max_concurrent", "Jobs running at once (all)"],
  ["max_concurrent_per_user", "Per user"],
  ["max_concurrent_per_provider", "Per provider"],
  ["max_queued_per_user", "Queued jobs per user"],
];

export function QueueSection() {
  const [state, setState] = useState({ loading: true });
  const [limits, setLimits] = useState({});
  const [error, setError] = useState(null);
  const [note, setNote] = useState(null);
  useEffect(() => {
    optional("/api/queue")
      .then((reply) => {
        setState({ loading: false, ...reply });
        if (reply.available) setLimits(reply.data.limits || {});
      })
      .catch((e) => setState({ loading: false, error: e }));
  }, []);
  if (!state.loading && !state.error && !state.available)
    return (
      <Section title="Queue" id="queue">
        <NotAvailable what="The queue and its limits" issue={7} />
      </Section>
    );
  const save = async (event) => {
    event.preventDefault();
    setError(null);
    setNote(null);
    try {
      const body = Object.fromEntries(Object.entries(limits).map(([k, v]) => [k, v === "" || v === null ? null : typeof v === "number" ? v : Number(v)]));
      await api("/api/queue/limits", { method: "PUT", body });
      setNote("Saved.");
    } catch (e) {
      setError(e);
    }
  };
  const data = state.data || {};
  const keys = [...new Set([...LIMIT_FIELDS.map(([k]) => k), ...Object.keys(limits).filter((k) => typeof limits[k] !== "object")])];
  const labelOf = (key) => (LIMIT_FIELDS.find(([k]) => k === key) || [key, key.replaceAll("_", " ")])[1];
  return (
    <Section title="Queue" id="queue">
      <ErrorNote error={state.error} />
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
                {(props) => <input {...props} inputMode="numeric" value={limits[key] ?? ""} onInput={(e) => setLimits({ ...limits, [key]: e.target.value })} />}
              </Field>
            ))}
          </div>
          {can("queue.manage") ? <button type="submit" class="button">Save limits</button> : null}
        </fieldset>
      </form>
      {note ? <Notice kind="success">{note}</Notice> : null}
      <ErrorNote error={error}>Not saved</ErrorNote>
    </Section>
  );
}
