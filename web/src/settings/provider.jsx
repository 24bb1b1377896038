// A provider's token (saved encrypted on the server, never shown again), Validate, account, spend.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorNote, Field, Notice, Section } from "../components.jsx";
import { money } from "../format.js";
import { can } from "../session.js";

export function ProviderSettings({ provider, onChange }) {
  const name = provider.provider;
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(null);
  const [error, setError] = useState(null);
  const [result, setResult] = useState(null);
  const [billing, setBilling] = useState(null);
  const manage = can("provider.manage");

  useEffect(() => {
    api(`/api/cloud/providers/${name}/billing`).then(setBilling).catch(() => setBilling(null));
  }, [name, provider.token.configured]);

  const run = async (what, fn) => {
    setBusy(what);
    setError(null);
    try {
      await fn();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  };
  const validate = () =>
    run("validate", async () => {
      setResult(await api(`/api/cloud/providers/${name}/validate`));
    });
  const save = (event) => {
    event.preventDefault();
    run("save", async () => {
      await api(`/api/cloud/providers/${name}/token`, { method: "PUT", body: { token } });
      setToken("");
      await onChange();
      setResult(await api(`/api/cloud/providers/${name}/validate`));
    });
  };
  const remove = () =>
    run("delete", async () => {
      await api(`/api/cloud/providers/${name}/token`, { method: "DELETE" });
      setResult(null);
      await onChange();
    });

  const account = result && result.account;
  const caps = provider.capabilities || {};
  return (
    <Section
      title={name === "replicate" ? "Replicate" : name}
      id={`provider-${name}`}
      description={[
        caps.cost_tracking && "cost tracking",
        caps.live_logs && "live logs",
        caps.webhooks && "webhooks",
        caps.max_upload_bytes && `uploads up to ${Math.round(caps.max_upload_bytes / 1048576)} MiB`,
      ]
        .filter(Boolean)
        .join(" · ")}
    >
      <p>
        API token:{" "}
        {provider.token.configured ? (
          <strong data-testid={`token-status-${name}`}>
            set ({provider.token.source === "saved" ? "saved on this server, encrypted" : "from the environment"})
          </strong>
        ) : (
          <strong data-testid={`token-status-${name}`}>not set</strong>
        )}
      </p>
      {manage ? (
        <form class="inline-form" onSubmit={save}>
          <Field label={`${name === "replicate" ? "Replicate" : name} API token`} hint={name === "replicate" ? "Starts with r8_; from replicate.com/account/api-tokens." : null}>
            {(props) => (
              <input {...props} type="password" autocomplete="off" spellcheck={false} value={token} onInput={(e) => setToken(e.target.value)} placeholder={provider.token.configured ? "Replace the token…" : "r8_…"} />
            )}
          </Field>
          <button type="submit" class="button button-primary" disabled={!token.trim() || busy}>
            {busy === "save" ? "Saving…" : "Save token"}
          </button>
          {provider.token.source === "saved" ? (
            <button type="button" class="button" onClick={remove} disabled={busy}>
              {busy === "delete" ? "Removing…" : "Remove saved token"}
            </button>
          ) : null}
        </form>
      ) : null}
      <div class="row">
        <button type="button" class="button" onClick={validate} disabled={busy}>
          {busy === "validate" ? "Validating…" : "Validate"}
        </button>
      </div>
      <ErrorNote error={error} />
      {result ? (
        result.valid ? (
          <Notice kind="success" title="The token works">
            {account ? (
              <span data-testid="account">
                Account <strong>{account.username || account.name || account.id}</strong>
                {account.type ? ` (${account.type})` : ""}
                {account.name && account.username && account.name !== account.username ? ` — ${account.name}` : ""}
              </span>
            ) : (
              "The provider accepted the credentials."
            )}
          </Notice>
        ) : (
          <Notice kind="error" title="The token does not work">
            {result.detail}
          </Notice>
        )
      ) : null}
      {billing ? (
        <p class="muted small">
          Spent through this server: {money(billing.spent_usd)} in all, {money(billing.spent_this_month_usd)} this month.
          {billing.balance_available ? ` Balance: ${money(billing.balance_usd)}.` : ""}
        </p>
      ) : null}
    </Section>
  );
}
