// Sign in (multi-user mode): POST /api/auth/login sets the session cookie.
import { useState } from "preact/hooks";
import { ErrorNote, Field } from "../components.jsx";
import { login } from "../session.js";

export function LoginScreen({ onSignedIn }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const result = await login(username.trim(), password);
      if (result === "ok") onSignedIn();
      else setError(new Error("Signed in, but the server did not accept the session. Are cookies allowed?"));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="login-page">
      <form class="card login-card" onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">
          <span aria-hidden="true">☁</span> Sign in to cloudtuner
        </h1>
        <Field label="Username">
          {(props) => <input {...props} autocomplete="username" required value={username} onInput={(e) => setUsername(e.target.value)} autofocus />}
        </Field>
        <Field label="Password">
          {(props) => <input {...props} type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.target.value)} />}
        </Field>
        <ErrorNote error={error}>Not signed in</ErrorNote>
        <button type="submit" class="button button-primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
