// API keys (issue 6): create with scopes (the key is shown once), list, revoke.
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { CopyButton, ErrorNote, Field, NotAvailable, Notice, Section } from "../components.jsx";
import { dateTime } from "../format.js";
import { useResource, useAction } from "../resource.js";
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

export function ApiKeysSection() {
  const keyList = useResource(BASE);
  const action = useAction();
  const [name, setName] = useState("");
  const [days, setDays] = useState("90");
  const [scopes, setScopes] = useState(new Set(["job.submit", "job.view.own"]));
  const [created, setCreated] = useState(null);

  const create = (event) => {
    event.preventDefault();
    setCreated(null);
    action.run(
      () =>
        api(BASE, {
          method: "POST",
          body: { name: name.trim(), expires_days: days ? Number(days) : null, scoped_permissions: [...scopes] },
        }),
      {
        name: "create",
        then: (reply) => {
          setCreated(reply);
          setName("");
          return keyList.reload();
        },
      },
    );
  };
  const revoke = (key) =>
    action.run(() => api(`${BASE}/${encodeURIComponent(key.id)}`, { method: "DELETE" }), { then: keyList.reload });
  const toggle = (scope) => {
    const next = new Set(scopes);
    if (next.has(scope)) next.delete(scope);
    else next.add(scope);
    setScopes(next);
  };

  if (keyList.missing)
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
  const keys = (keyList.data && keyList.data.api_keys) || [];
  return (
    <Section title="API keys" id="api-keys" description="For scripts and CI: send as Authorization: Bearer stk_…">
      <ErrorNote error={keyList.error}>API keys could not be loaded</ErrorNote>
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
        <button type="submit" class="button button-primary" disabled={action.busy || !name.trim() || !scopes.size}>
          {action.busy === "create" ? "Creating…" : "Create New Key"}
        </button>
      </form>
      <ErrorNote error={action.error} />
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
                  <td class="mono">{k.prefix}…</td>
                  <td class="small">{k.scoped_permissions.join(", ")}</td>
                  <td>{dateTime(k.last_used_at)}</td>
                  <td>{k.status !== "active" ? k.status : k.expires_at ? dateTime(k.expires_at) : "never"}</td>
                  <td>
                    {k.status === "active" ? (
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
      ) : keyList.available ? (
        <p class="muted">No API key yet.</p>
      ) : null}
    </Section>
  );
}
