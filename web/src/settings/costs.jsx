// Spending limits (issue 5: "cost_limit" in PUT /api/cloud/settings and PUT /api/cloud/providers/{p})
// and hardware with prices (GET /api/cloud/providers/{p}/hardware).
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorNote, Field, NotAvailable, Notice, Section } from "../components.jsx";
import { money } from "../format.js";
import { useAction } from "../resource.js";
import { can } from "../session.js";
import { CostLimitStatus, useCostLimit } from "../screens/cost-limit.jsx";
import { useHardware } from "../screens/submit-dialog.jsx";

const PERIODS = [["daily", "Day"], ["weekly", "Week"], ["monthly", "Month"]];

function LimitForm({ label, current, onSave }) {
  const limit = current || {};
  const [enabled, setEnabled] = useState(Boolean(limit.enabled));
  const [amount, setAmount] = useState(limit.amount ?? "");
  const clear = !enabled && amount === "";
  const [period, setPeriod] = useState(limit.period || "monthly");
  const [action, setAction] = useState(limit.action || "warn");
  const { busy, error, note, run } = useAction();
  const save = async (event) => {
    event.preventDefault();
    await run(async () => {
      await onSave(clear ? null : { enabled, amount: Number(amount), period, action });
    }, { note: "Saved." });
  };
  return (
    <form onSubmit={save} class="stack limit-form">
      <fieldset class="bare" disabled={!can("provider.manage")}>
        <legend class="small-heading">{label}</legend>
        <label class="check">
          <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} />
          Limit spending
        </label>
        <div class="form-grid">
          <Field label="Amount (USD)">
            {(props) => <input {...props} inputMode="decimal" value={amount} onInput={(e) => setAmount(e.target.value)} />}
          </Field>
          <Field label="Per">
            {(props) => (
              <select {...props} value={period} onChange={(e) => setPeriod(e.target.value)}>
                {PERIODS.map(([id, l]) => <option value={id}>{l}</option>)}
              </select>
            )}
          </Field>
          <Field label="At the limit">
            {(props) => (
              <select {...props} value={action} onChange={(e) => setAction(e.target.value)}>
                <option value="warn">Warn</option>
                <option value="block">Block new jobs</option>
              </select>
            )}
          </Field>
        </div>
        {can("provider.manage") ? (
          <button type="submit" class="button" disabled={busy}>
            Save limit
          </button>
        ) : null}
      </fieldset>
      {note ? <span class="muted small" role="status">{note}</span> : null}
      <ErrorNote error={error}>Not saved</ErrorNote>
    </form>
  );
}

export function CostLimitsSection({ cloud, providers, onChange }) {
  const [version, setVersion] = useState(0);
  const status = useCostLimit([version]);
  const supported = cloud && "cost_limit" in cloud;
  return (
    <Section title="Cost limits" id="cost-limits" description="Stop runaway spending: per period, warn or block new jobs.">
      <CostLimitStatus state={status} />
      {supported ? (
        <>
          <LimitForm
            label="All providers"
            current={cloud.cost_limit}
            onSave={async (limit) => {
              await api("/api/cloud/settings", { method: "PUT", body: { cost_limit: limit } });
              await onChange();
              setVersion((v) => v + 1);
            }}
          />
          {providers
            .filter((p) => p.capabilities?.cost_tracking)
            .map((p) => (
              <LimitForm
                label={p.provider}
                current={p.settings.cost_limit}
                onSave={async (limit) => {
                  await api(`/api/cloud/providers/${p.provider}`, { method: "PUT", body: { cost_limit: limit } });
                  await onChange();
                  setVersion((v) => v + 1);
                }}
              />
            ))}
        </>
      ) : status.available === false ? null : (
        <p class="muted small">This server does not take cost limits in its settings yet (issue 5).</p>
      )}
    </Section>
  );
}

export function HardwareSection({ provider }) {
  const hw = useHardware(provider);
  return (
    <Section title={`Hardware and prices (${provider})`} id={`hardware-${provider}`}>
      {hw.loading ? <p class="muted">Loading…</p> : null}
      {!hw.loading && !hw.available ? <NotAvailable what="The hardware list with prices" issue={5} /> : null}
      {hw.available && !hw.list.length ? <Notice>This provider lists no hardware.</Notice> : null}
      {hw.list.length ? (
        <div class="table-wrap">
          <table class="data-table">
            <caption class="visually-hidden">Hardware of {provider}</caption>
            <thead>
              <tr>
                <th scope="col">Hardware</th>
                <th scope="col">GPU</th>
                <th scope="col">VRAM</th>
                <th scope="col" class="cell-num">Per hour</th>
              </tr>
            </thead>
            <tbody>
              {hw.list.map((h) => (
                <tr class={h.available === false ? "muted" : ""}>
                  <td>
                    <span class="mono">{h.sku || h.id}</span>
                    {h.available === false ? <div class="small">not available as configured</div> : null}
                    {h.source === "settings" ? <div class="small">price set in the provider settings</div> : null}
                  </td>
                  <td>
                    {h.gpu_count > 1 ? `${h.gpu_count}× ` : ""}
                    {h.gpu_type || h.gpu_model || h.name}
                    {h.default ? <span class="muted small"> (default)</span> : null}
                  </td>
                  <td>{(h.vram_gb ?? h.vram_gib) ? `${h.vram_gb ?? h.vram_gib} GB${h.gpu_count > 1 ? " each" : ""}` : "—"}</td>
                  <td class="cell-num">{money(h.price_per_hour ?? (h.price_per_second != null ? h.price_per_second * 3600 : null))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </Section>
  );
}
