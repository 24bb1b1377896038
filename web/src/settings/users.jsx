// Users and roles (issue 6), for admins in multi-user mode.
import { useEffect, useState } from "preact/hooks";
import { api, optional } from "../api.js";
import { ErrorNote, Field, NotAvailable, Section } from "../components.jsx";
import { dateTime } from "../format.js";

const ROLES = ["viewer", "researcher", "lead", "admin"];

export function UsersSection() {
  const [state, setState] = useState({ loading: true });
  const [form, setForm] = useState({ username: "", password: "", role: "researcher" });
  const [error, setError] = useState(null);
  const load = () =>
    optional("/api/users")
      .then((reply) => setState({ loading: false, ...reply }))
      .catch((e) => setState({ loading: false, error: e }));
  useEffect(() => {
    load();
  }, []);
  if (!state.loading && !state.error && !state.available)
    return (
      <Section title="Users" id="users">
        <NotAvailable what="Managing users" issue={6} />
      </Section>
    );
  const create = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      await api("/api/users", { method: "POST", body: form });
      setForm({ username: "", password: "", role: "researcher" });
      load();
    } catch (e) {
      setError(e);
    }
  };
  const users = (state.data && (state.data.users || state.data.items)) || [];
  return (
    <Section title="Users" id="users">
      <ErrorNote error={state.error || error} />
      <form onSubmit={create} class="inline-form">
        <Field label="Username">{(p) => <input {...p} required value={form.username} onInput={(e) => setForm({ ...form, username: e.target.value })} />}</Field>
        <Field label="Password">{(p) => <input {...p} type="password" required autocomplete="new-password" value={form.password} onInput={(e) => setForm({ ...form, password: e.target.value })} />}</Field>
        <Field label="Role">
          {(p) => (
            <select {...p} value={form.role} onChange={(e) => setForm({ ...form, role: e.target.value })}>
              {ROLES.map((r) => <option value={r}>{r}</option>)}
            </select>
          )}
        </Field>
        <button type="submit" class="button">Add user</button>
      </form>
      <div class="table-wrap">
        <table class="data-table">
          <caption class="visually-hidden">Users</caption>
          <thead><tr><th scope="col">User</th><th scope="col">Role</th><th scope="col">Created</th></tr></thead>
          <tbody>
            {users.map((u) => (
              <tr><td>{u.username}</td><td>{u.role}</td><td>{dateTime(u.created_at)}</td></tr>
            ))}
          </tbody>
        </table>
      </div>
    </Section>
  );
}
