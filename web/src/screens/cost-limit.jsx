// Spending-limit status (issue 5: GET /api/cloud/metrics/cost-limit), shown before submit and in Settings.
import { useEffect, useState } from "preact/hooks";
import { optional } from "../api.js";
import { money } from "../format.js";

function limitsOf(data) {
  if (!data) return [];
  if (Array.isArray(data.limits)) return data.limits;
  if (Array.isArray(data)) return data;
  if (data.limit !== undefined || data.amount !== undefined || data.enabled !== undefined) return [data];
  return Object.values(data).filter((v) => v && typeof v === "object" && !Array.isArray(v));
}

export function useCostLimit(deps = []) {
  const [state, setState] = useState({ loading: true });
  useEffect(() => {
    optional("/api/cloud/metrics/cost-limit")
      .then((reply) => setState({ loading: false, ...reply }))
      .catch((error) => setState({ loading: false, error }));
  }, deps);
  return state;
}

export function CostLimitStatus({ state, compact, limits: given }) {
  if (given) return <LimitList limits={given} compact={compact} />;
  if (state.loading) return <p class="muted small">Checking spending limits…</p>;
  if (state.error) return <p class="muted small">Spending limits could not be read: {state.error.message}</p>;
  if (!state.available)
    return <p class="muted small">Spending limits are not available on this server yet (issue 5).</p>;
  return <LimitList limits={limitsOf(state.data)} compact={compact} />;
}

function LimitList({ limits: all, compact }) {
  const limits = all.filter((l) => l.enabled !== false);
  if (!limits.length) return <p class="muted small">No spending limit is set.</p>;
  return (
    <ul class={`limits ${compact ? "limits-compact" : ""}`}>
      {limits.map((l) => {
        const amount = l.amount ?? l.limit_usd ?? l.limit;
        const spent = l.spent_usd ?? l.spent ?? 0;
        const reserved = l.reserved_usd ?? l.reserved ?? 0;
        const percent = l.percent_used ?? l.percentage ?? (amount ? (100 * (spent + reserved)) / amount : 0);
        const over = l.exceeded ?? percent >= 100;
        return (
          <li class="limit">
            <div>
              <strong>{l.provider || (l.scope && l.scope !== "global" ? l.scope : "All providers")}</strong>: {money(spent)} spent
              {reserved ? ` + ${money(reserved)} reserved` : ""} of {money(amount)} {l.period ? `per ${String(l.period).replace(/ly$/, "").replace("dai", "day")}` : ""}
              <span class="muted">
                {" "}
                · {l.action === "block" ? "blocks new jobs" : "warns"} at the limit
                {l.resets_at ? ` · resets ${new Date(l.resets_at).toLocaleString()}` : ""}
              </span>
            </div>
            <div class="meter" role="meter" aria-valuemin="0" aria-valuemax="100" aria-valuenow={Math.round(Math.min(100, percent))} aria-label="Share of the limit used">
              <div class={`meter-fill ${over ? "meter-over" : percent > 80 ? "meter-warn" : ""}`} style={{ width: `${Math.min(100, percent)}%` }} />
            </div>
          </li>
        );
      })}
    </ul>
  );
}
