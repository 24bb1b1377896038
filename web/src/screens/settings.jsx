// Settings (the gear): providers and their tokens, delivery and consent, costs, hardware, keys,
// storage, workers, queue, users. Each part is its own module under settings/.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorNote, Loading } from "../components.jsx";
import { can, session } from "../session.js";
import { CloudSettingsSection, WebhookAllowlist } from "../settings/cloud.jsx";
import { CostLimitsSection, HardwareSection } from "../settings/costs.jsx";
import { ApiKeysSection } from "../settings/keys.jsx";
import { ProviderSettings } from "../settings/provider.jsx";
import { QueueSection } from "../settings/queue.jsx";
import { StorageSection } from "../settings/storage.jsx";
import { UsersSection } from "../settings/users.jsx";
import { WorkersSection } from "../settings/workers.jsx";

export function SettingsScreen() {
  const [providers, setProviders] = useState(null);
  const [cloud, setCloud] = useState(null);
  const [error, setError] = useState(null);
  const viewProviders = can("provider.view", "provider.manage");

  const load = async () => {
    if (!viewProviders) return;
    try {
      const [p, c] = await Promise.all([api("/api/cloud/providers"), api("/api/cloud/settings")]);
      setProviders(p.providers);
      setCloud(c);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    load();
  }, []);

  const parts = [
    viewProviders && { id: "providers", label: "Providers" },
    viewProviders && { id: "cloud-settings", label: "Delivery and uploads" },
    viewProviders && { id: "cost-limits", label: "Cost limits" },
    viewProviders && { id: "hardware", label: "Hardware" },
    can("account.manage", "job.submit") && { id: "api-keys", label: "API keys" },
    can("storage.manage") && { id: "storage", label: "Storage keys" },
    can("worker.manage") && { id: "workers", label: "Workers" },
    can("queue.manage") && { id: "queue", label: "Queue" },
    can("user.manage") && session.mode !== "single" && { id: "users", label: "Users" },
  ].filter(Boolean);

  return (
    <div class="settings-screen">
      <div class="page-head">
        <h1>Settings</h1>
      </div>
      <div class="settings-layout">
        <nav class="settings-nav" aria-label="Settings sections">
          <ul>
            {parts.map((part) => (
              <li>
                <a
                  href={`#/settings`}
                  onClick={(e) => {
                    e.preventDefault();
                    const target = document.getElementById(part.id) || document.querySelector(`[id^="${part.id}"]`);
                    if (target) {
                      target.scrollIntoView({ behavior: "smooth", block: "start" });
                      const heading = target.querySelector("h2");
                      if (heading) {
                        heading.setAttribute("tabindex", "-1");
                        heading.focus({ preventScroll: true });
                      }
                    }
                  }}
                >
                  {part.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="settings-body">
          <ErrorNote error={error}>Settings could not be loaded</ErrorNote>
          {viewProviders && !providers && !error ? <Loading /> : null}
          {providers ? (
            <div id="providers" class="stack">
              {providers.map((p) => (
                <div class="stack">
                  <ProviderSettings provider={p} onChange={load} />
                </div>
              ))}
            </div>
          ) : null}
          {cloud ? (
            <>
              <CloudSettingsSection settings={cloud} onSaved={setCloud} />
              {providers && providers.length ? (
                <section class="card" aria-labelledby="webhooks-title">
                  <h2 id="webhooks-title">Webhook senders</h2>
                  {providers.map((p) => <WebhookAllowlist provider={p} onSaved={load} />)}
                </section>
              ) : null}
              <CostLimitsSection cloud={cloud} providers={providers || []} onChange={load} />
            </>
          ) : null}
          {providers ? (
            <div id="hardware" class="stack">
              {providers.map((p) => <HardwareSection provider={p.provider} />)}
            </div>
          ) : null}
          {can("account.manage", "job.submit") ? <ApiKeysSection /> : null}
          {can("storage.manage") ? <StorageSection /> : null}
          {can("worker.manage") ? <WorkersSection /> : null}
          {can("queue.manage") ? <QueueSection /> : null}
          {can("user.manage") && session.mode !== "single" ? <UsersSection /> : null}
        </div>
      </div>
    </div>
  );
}
