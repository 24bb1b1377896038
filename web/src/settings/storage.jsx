// Access keys of the built-in S3 endpoint (POST/GET/DELETE /api/cloud/storage/credentials).
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { CopyButton, ErrorNote, Field, NotAvailable, Notice, Section } from "../components.jsx";
import { dateTime } from "../format.js";
import { useAction, useResource } from "../resource.js";

const BASE = "/api/cloud/storage/credentials";

export function StorageSection() {
  const credentials = useResource(BASE);
  const action = useAction();
  const [name, setName] = useState("");
  const [prefix, setPrefix] = useState("");
  const [created, setCreated] = useState(null);
  if (credentials.missing)
    return (
      <Section title="Storage keys" id="storage">
        <NotAvailable what="The built-in S3 endpoint's keys" issue={4} />
      </Section>
    );
  const create = (event) => {
    event.preventDefault();
    setCreated(null);
    action.run(() => api(BASE, { method: "POST", body: { name: name.trim() || null, prefix: prefix.trim() || null } }), {
      name: "create",
      then: (reply) => {
        setCreated(reply);
        setName("");
        setPrefix("");
        return credentials.reload();
      },
    });
  };
  const revoke = (id) =>
    action.run(() => api(`${BASE}/${encodeURIComponent(id)}`, { method: "DELETE" }), { then: credentials.reload });
  const list = ((credentials.data && credentials.data.credentials) || []).filter((c) => c.kind !== "job");
  return (
    <Section
      title="Storage keys"
      id="storage"
      description={`This server is also an S3 endpoint (${location.origin}/api/cloud/storage) for delivered models; boto3 and aws s3 work with these keys.`}
    >
      <ErrorNote error={credentials.error}>Storage keys could not be loaded</ErrorNote>
      <ErrorNote error={action.error} />
      <form onSubmit={create} class="inline-form">
        <Field label="Key name">
          {(props) => <input {...props} value={name} placeholder="laptop" onInput={(e) => setName(e.target.value)} />}
        </Field>
        <Field label="Limit to prefix" hint="Optional, such as models/">
          {(props) => <input {...props} value={prefix} onInput={(e) => setPrefix(e.target.value)} />}
        </Field>
        <button type="submit" class="button" disabled={action.busy}>
          {action.busy === "create" ? "Creating…" : "Create storage key"}
        </button>
      </form>
      {created ? (
        <Notice kind="success" title="Copy the secret now: it is not shown again">
          <div class="secret-row"><span>Access key id</span> <code class="secret">{created.access_key_id}</code> <CopyButton text={created.access_key_id} /></div>
          <div class="secret-row"><span>Secret</span> <code class="secret">{created.secret_access_key}</code> <CopyButton text={created.secret_access_key} /></div>
          <div class="muted small">Endpoint {created.endpoint_url}, region {created.region}</div>
        </Notice>
      ) : null}
      {list.length ? (
        <div class="table-wrap">
          <table class="data-table">
            <caption class="visually-hidden">Storage keys</caption>
            <thead>
              <tr>
                <th scope="col">Access key id</th>
                <th scope="col">Name</th>
                <th scope="col">Scope</th>
                <th scope="col">Status</th>
                <th scope="col">Created</th>
                <th scope="col"><span class="visually-hidden">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {list.map((c) => (
                <tr>
                  <td class="mono">{c.access_key_id}</td>
                  <td>{c.name || "—"}</td>
                  <td class="mono small">{c.bucket || "any bucket"}/{c.prefix || ""}</td>
                  <td>{c.status}</td>
                  <td>{dateTime(c.created_at)}</td>
                  <td>
                    {c.status === "active" ? (
                      <button type="button" class="button button-small button-danger" onClick={() => revoke(c.access_key_id)}>Revoke</button>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : credentials.available ? (
        <p class="muted">No storage key yet; jobs get their own short-lived keys automatically.</p>
      ) : null}
    </Section>
  );
}
