// Cloud settings: the public (webhook) URL, upload consent, trusted proxies; a provider's webhook allowlist.
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorNote, Field, Notice, Section } from "../components.jsx";
import { useAction } from "../resource.js";
import { can } from "../session.js";

const CONSENT = [
  ["always_ask", "Always ask", "Show what will be uploaded and ask before every job."],
  ["always_allow", "Always allow", "Upload without asking (for trusted, automated use)."],
  ["never_upload", "Never upload", "Local datasets are never sent to a provider."],
];

export function CloudSettingsSection({ settings, onSaved }) {
  const [publicUrl, setPublicUrl] = useState(settings.public_url || "");
  const [consent, setConsent] = useState(settings.upload_consent);
  const [proxies, setProxies] = useState((settings.trusted_proxies || []).join(", "));
  const { busy, error, note, run } = useAction();
  const manage = can("provider.manage");

  const save = async (event) => {
    event.preventDefault();
    await run(async () => {
      const saved = await api("/api/cloud/settings", {
        method: "PUT",
        body: {
          public_url: publicUrl.trim(),
          upload_consent: consent,
          trusted_proxies: proxies.split(/[\s,]+/).filter(Boolean),
        },
      });
      onSaved(saved);
    }, { note: "Saved." });
  };
  return (
    <Section title="Delivery and uploads" id="cloud-settings">
      <form onSubmit={save} class="stack">
        <fieldset class="bare" disabled={!manage}>
          <Field
            label="Webhook URL (public URL of this server)"
            hint="A base URL with no path, such as https://abc123.ngrok.io. Providers send webhooks to <url>/api/webhooks/<provider> and deliver models here. Blank: the server polls instead."
            wide
          >
            {(props) => <input {...props} type="url" value={publicUrl} placeholder="https://abc123.ngrok.io" onInput={(e) => setPublicUrl(e.target.value)} />}
          </Field>
          {settings.effective_public_url && settings.effective_public_url !== settings.public_url ? (
            <p class="muted small">In use now: {settings.effective_public_url} (from CLOUDTUNER_PUBLIC_URL).</p>
          ) : null}
          <fieldset class="radio-group">
            <legend>Upload consent</legend>
            {CONSENT.map(([id, label, hint]) => (
              <label class="radio">
                <input type="radio" name="consent" value={id} checked={consent === id} onChange={() => setConsent(id)} />
                <span>
                  <strong>{label}</strong>
                  <small class="hint">{hint}</small>
                </span>
              </label>
            ))}
          </fieldset>
          <Field label="Trusted reverse proxies" hint="IPs or CIDR ranges whose X-Forwarded-For is believed (for webhook IP allowlists)." wide>
            {(props) => <input {...props} value={proxies} placeholder="10.0.0.0/8" onInput={(e) => setProxies(e.target.value)} />}
          </Field>
          {manage ? (
            <button type="submit" class="button button-primary" disabled={busy}>
              {busy ? "Saving…" : "Save"}
            </button>
          ) : null}
        </fieldset>
      </form>
      {note ? <Notice kind="success">{note}</Notice> : null}
      <ErrorNote error={error}>Not saved</ErrorNote>
    </Section>
  );
}

export function WebhookAllowlist({ provider, onSaved }) {
  const [ips, setIps] = useState((provider.settings.webhook_allowed_ips || []).join(", "));
  const { busy, error, note, run } = useAction();
  if (!provider.capabilities?.webhooks) return null;
  const save = async (event) => {
    event.preventDefault();
    await run(async () => {
      await api(`/api/cloud/providers/${provider.provider}`, { method: "PUT", body: { webhook_allowed_ips: ips.split(/[\s,]+/).filter(Boolean) } });
      await onSaved();
    }, { note: "Saved." });
  };
  return (
    <form onSubmit={save} class="inline-form">
      <Field label={`Accept ${provider.provider} webhooks only from`} hint="Replicate sends from 34.82.0.0/16 and 35.185.0.0/16. Blank: any sender with a valid signature.">
        {(props) => <input {...props} value={ips} disabled={!can("provider.manage")} onInput={(e) => setIps(e.target.value)} placeholder="34.82.0.0/16, 35.185.0.0/16" />}
      </Field>
      {can("provider.manage") ? (
        <button type="submit" class="button" disabled={busy}>
          Save allowlist
        </button>
      ) : null}
      {note ? <span class="muted small" role="status">{note}</span> : null}
      <ErrorNote error={error}>Not saved</ErrorNote>
    </form>
  );
}
