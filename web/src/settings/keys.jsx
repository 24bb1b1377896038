// API keys (issue 6): create with scopes (the key is shown once), list, revoke.
import { useEffect, useState } from "preact/hooks";
import { api, optional } from "../api.js";
import { CopyButton, ErrorNote, Field, NotAvailable, Notice, Section } from "../components.jsx";
import { dateTime } from "../format.js";
import { session } from "../session.js";

export const SCOPES = [
  ["job.submit", "Submit jobs"],
  ["job.view.own", "See own jobs"],
  ["job.cancel.own", "Cancel own jobs"],
  ["job.delete.own", "Delete own jobs"],
  ["job.view.all", "See all jobs (admin)"],
  ["job.cancel.all", "Cancel all jobs (admin)"],
  ["config.view", "Read configs"],
  ["config.edit", "Edit configs"],
  ["metrics.view", "Read metrics"],
];

const BASE = "/api/cloud/auth/api-keys";

function keysOf(data) {
  return (data && (data.keys || data.api_keys || data.items)) || (Array.isArray(data) ? data : []);
}

export function ApiKeysSection() {
  const [state, setState] = useState({ loading: true });
  const [name, setName] = useState("");
  const [days, setDays] = useState("90");
  const [scopes, setScopes] = useState(new Set(["job.submit", "job.view.own"]));
  const [created, setCreated] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);

  const load = () =>
    optional(BASE)
      .then((reply) => setState({ loading: false, ...reply }))
      .catch((e) => setState({ loading: false, error: e }));
  useEffect(() => {
    load();
  }, []);

  const create = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const reply = await api(BASE, {
        method: "POST",
        body: { name: name.trim(), expires_days: days ? Number(days) : null, scoped_permissions: [...scopes] },
      });
      setCreated({ key: reply.key || reply.api_key || reply.token || reply.secret, info: reply });
      setName("");
      load();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (key) => {
    setError(null);
    try {
      await api(`${BASE}/${encodeURIComponent(key.id || key.key_id || key.prefix)}`, { method: "DELETE" });
      load();
    } catch (e) {
      setError(e);
    }
  };
  const toggle = (scope) => {
    const next = new Set(scopes);
    if (next.has(scope)) next.delete(scope);
    else next.add(scope);
    setScopes(next);
  };

  if (!state.loading && !state.error && !state.available)
    return (
      <Section title="API keys" id="api-keys">
        <NotAvailable what="Creating API keys" issue={6} />
      </Section>
    );
  if (session.mode === "single")
    return (
      <Section title="API keys" id="api-keys">
        <Notice title="API keys come with users">
          This server runs in single-user mode: every request from this machine may do everything, so scripts here need
          no key. To give keys to CI or other people, create an admin on the server's machine with{" "}
          <code>cloudtuner admin create USERNAME --password-stdin</code>, sign in, and create keys here.
        </Notice>
      </Section>
    );
  const keys = keysOf(state.data);
  return (
    <Section title="API keys" id="api-keys" description="For scripts and CI: send as Authorization: Bearer stk_…">
      <ErrorNote error={state.error} />
      <form onSubmit={create} class="stack">
        <div class="form-grid">
          <Field label="Name">
            {(props) => <input {...props} required value={name} placeholder="ci-pipeline" onInput={(e) => setName(e.target.value)} />}
          </Field>
          <Field label="Expires after (days)" hint="Blank: never.">
            {(props) => <input {...props} inputMode="numeric" value={days} onInput={(e) => setDays(e.target.value)} />}
          </Field>
        </div>
        <fieldset class="checks">
          <legend>Permissions</legend>
          {SCOPES.map(([scope, label]) => (
            <label class="check">
              <input type="checkbox" checked={scopes.has(scope)} onChange={() => toggle(scope)} />
              {label} <code class="small">{scope}</code>
            </label>
          ))}
        </fieldset>
        <button type="submit" class="button button-primary" disabled={busy || !name.trim() || !scopes.size}>
          {busy ? "Creating…" : "Create New Key"}
        </button>
      </form>
      <ErrorNote error={error} />
      {created ? (
        <Notice kind="success" title="Your new key: copy it now, it is not shown again">
          <div class="secret-row">
            <code class="secret" data-testid="new-api-key">{created.key}</code>
            <CopyButton text={created.key} />
          </div>
        </Notice>
      ) : null}
      {keys.length ? (
        <div class="table-wrap">
          <table class="data-table">
            <caption class="visually-hidden">API keys</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Key</th>
                <th scope="col">Permissions</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col"><span class="visually-hidden">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {keys.map((k) => (
                <tr>
                  <td>{k.name}</td>
                  <td class="mono">{k.prefix || k.key_prefix || ""}…</td>
                  <td class="small">{(k.scoped_permissions || k.scopes || []).join(", ")}</td>
                  <td>{dateTime(k.last_used_at)}</td>
                  <td>{k.status && k.status !== "active" ? k.status : k.revoked_at ? "revoked" : dateTime(k.expires_at)}</td>
                  <td>
                    {!k.revoked_at && (!k.status || k.status === "active") ? (
                      <button type="button" class="button button-small button-danger" onClick={() => revoke(k)}>
                        Revoke
                      </button>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : state.available ? (
        <p class="muted">No API key yet.</p>
      ) : null}
    </Section>
  );
}
