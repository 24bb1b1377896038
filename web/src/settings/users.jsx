// Users and roles (issue 6), for admins in multi-user mode.
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorNote, Field, NotAvailable, Section } from "../components.jsx";
import { dateTime } from "../format.js";
import { useAction, useResource } from "../resource.js";

const ROLES = ["viewer", "researcher", "lead", "admin"];

export function UsersSection() {
  const userList = useResource("/api/users");
  const action = useAction();
  const [form, setForm] = useState({ username: "", password: "", role: "researcher" });
  if (userList.missing)
    return (
      <Section title="Users" id="users">
        <NotAvailable what="Managing users" issue={6} />
      </Section>
    );
  const create = (event) => {
    event.preventDefault();
    action.run(() => api("/api/users", { method: "POST", body: form }), {
      name: "create",
      then: () => {
        setForm({ username: "", password: "", role: "researcher" });
        return userList.reload();
      },
    });
  };
  const users = (userList.data && userList.data.users) || [];
  return (
    <Section title="Users" id="users">
      <ErrorNote error={userList.error}>Users could not be loaded</ErrorNote>
      <ErrorNote error={action.error} />
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
        <button type="submit" class="button" disabled={action.busy}>Add user</button>
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
