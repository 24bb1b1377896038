// Formatting for people: money, sizes, durations, ages, statuses.

export const STATUS_LABELS = {
  pending_approval: "Awaiting approval",
  queued: "Queued",
  uploading: "Uploading",
  starting: "Starting",
  running: "Running",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};
export const ACTIVE = ["pending_approval", "queued", "uploading", "starting", "running"];
export const TERMINAL = ["completed", "failed", "cancelled"];
export const isTerminal = (status) => TERMINAL.includes(status);

export function money(value, digits) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  const n = Number(value);
  const places = digits ?? (n !== 0 && Math.abs(n) < 0.1 ? 4 : 2);
  return `$${n.toFixed(places)}`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(Number(seconds)));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export function age(iso, now = Date.now()) {
  if (!iso) return "—";
  const seconds = Math.max(0, (now - new Date(iso).getTime()) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  const days = Math.round(seconds / 86400);
  if (days < 60) return `${days} d ago`;
  return dateTime(iso);
}

let dateTimeFormat = null;
export function dateTime(iso) {
  if (!iso) return "—";
  dateTimeFormat = dateTimeFormat || new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  return dateTimeFormat.format(new Date(iso));
}

export function number(value, digits = 4) {
  if (value === null || value === undefined) return "—";
  const n = Number(value);
  if (Math.abs(n) > 0 && (Math.abs(n) < 1e-3 || Math.abs(n) >= 1e6)) return n.toExponential(2);
  return String(Number(n.toFixed(digits)));
}

export function jobTitle(job) {
  return job.tracker_run_name || job.config_name || job.job_id;
}

// The estimate, as issue 5 shapes it, from any of the names it may carry.
export function estimateOf(source) {
  if (!source) return null;
  const e = source.estimate || source.cost_estimate || source.estimated_cost || null;
  if (!e) return null;
  if (typeof e === "number") return { low: e, high: e };
  const low = e.low_usd ?? e.low ?? e.min_usd ?? e.min ?? e.cost_low_usd;
  const high = e.high_usd ?? e.high ?? e.max_usd ?? e.max ?? e.cost_high_usd;
  const mid = e.expected_usd ?? e.expected ?? e.cost_usd ?? e.usd;
  if (low === undefined && high === undefined && mid === undefined) return null;
  return { low: low ?? mid, high: high ?? mid, expected: mid, basis: basisText(e.basis || e.source || e.method), raw: e };
}

function basisText(basis) {
  if (!basis) return null;
  if (typeof basis === "string") return basis;
  const parts = [];
  if (basis.source === "history") parts.push(`learned from ${basis.samples} finished job${basis.samples === 1 ? "" : "s"}`);
  else if (basis.source === "defaults") parts.push("from typical training times");
  if (basis.steps) parts.push(`${basis.steps}${basis.steps_assumed ? " (assumed)" : ""} steps`);
  if (basis.hardware) parts.push(`on ${basis.hardware}`);
  if (basis.note) parts.push(basis.note);
  return parts.join(", ") || null;
}
