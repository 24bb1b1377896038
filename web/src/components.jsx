// Small shared pieces: badges, progress bars, notes, dialogs, tabs, form fields.
import { useEffect, useRef, useState } from "preact/hooks";
import { STATUS_LABELS, bytes, number } from "./format.js";

// Stages whose progress counts bytes of the datasets' archive, not training steps.
const BYTE_STAGES = ["packaging", "uploading"];

function progressLabel(p) {
  if (p.step != null && p.total_steps) {
    if (BYTE_STAGES.includes(p.stage)) return `${p.stage} ${bytes(p.step)}/${bytes(p.total_steps)}`;
    return `step ${p.step}/${p.total_steps}`;
  }
  return p.stage ? p.stage.replaceAll("_", " ") : "";
}

// The stage to show beside a progress bar: none when the bar's own label already names it.
export function stageHint(p) {
  if (!p || !p.stage) return null;
  const stage = p.stage.replaceAll("_", " ");
  return progressLabel(p).startsWith(stage) ? null : stage;
}

export function StatusBadge({ status, cancelRequested }) {
  const label = STATUS_LABELS[status] || status;
  return (
    <span class={`badge badge-${status}`} data-status={status}>
      <span class="badge-dot" aria-hidden="true" />
      {label}
      {cancelRequested ? <span class="badge-extra"> · cancelling</span> : null}
    </span>
  );
}

export function ProgressBar({ progress, status, compact }) {
  const p = progress || {};
  const percent = p.percent ?? (p.step != null && p.total_steps ? (100 * p.step) / p.total_steps : null);
  const label = progressLabel(p);
  if (percent == null && !label) return <span class="muted">—</span>;
  return (
    <div class={`progress ${compact ? "progress-compact" : ""}`}>
      <div
        class={`progress-track progress-${status || "running"}`}
        role="progressbar"
        aria-valuemin="0"
        aria-valuemax="100"
        aria-valuenow={percent == null ? undefined : Math.round(percent)}
        aria-label={BYTE_STAGES.includes(p.stage) ? "Upload progress" : "Training progress"}
      >
        <div class="progress-fill" style={{ width: `${Math.min(100, percent ?? 0)}%` }} />
      </div>
      <div class="progress-text">
        <span>{label}</span>
        {p.loss != null ? <span class="muted"> · loss {number(p.loss)}</span> : null}
      </div>
    </div>
  );
}

export function Notice({ kind = "info", title, children, role }) {
  return (
    <div class={`notice notice-${kind}`} role={role || (kind === "error" ? "alert" : "status")}>
      {title ? <strong class="notice-title">{title}</strong> : null}
      <div>{children}</div>
    </div>
  );
}

// The calm note for a screen whose API this server does not have yet.
export function NotAvailable({ what, issue }) {
  return (
    <Notice kind="info" title="Not available on this server yet">
      {what} needs a part of the cloudtuner API that this server does not offer yet
      {issue ? ` (issue ${issue})` : ""}. Everything else works; update cloudtuner to use it.
    </Notice>
  );
}

export function ErrorNote({ error, children }) {
  if (!error) return null;
  return (
    <Notice kind="error" title={children || "Something went wrong"}>
      {error.message || String(error)}
      {error.code ? <span class="muted"> ({error.code})</span> : null}
    </Notice>
  );
}

export function Loading({ label = "Loading…" }) {
  return (
    <p class="loading" role="status">
      <span class="spinner" aria-hidden="true" />
      {label}
    </p>
  );
}

// A modal dialog (the native <dialog>: focus stays inside, Escape closes it).
export function Dialog({ open, title, onClose, children, footer, wide, labelledBy }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  const id = labelledBy || `dialog-${title ? title.replace(/\W+/g, "-").toLowerCase() : "x"}`;
  return (
    <dialog
      ref={ref}
      class={`dialog ${wide ? "dialog-wide" : ""}`}
      aria-labelledby={id}
      onCancel={(event) => {
        event.preventDefault();
        onClose && onClose();
      }}
    >
      {open ? (
        <>
          <header class="dialog-head">
            <h2 id={id}>{title}</h2>
            <button type="button" class="icon-button" aria-label="Close" onClick={() => onClose && onClose()}>
              ×
            </button>
          </header>
          <div class="dialog-body">{children}</div>
          {footer ? <footer class="dialog-foot">{footer}</footer> : null}
        </>
      ) : null}
    </dialog>
  );
}

export function ConfirmDialog({ open, title, message, confirmLabel, danger, busy, error, onConfirm, onClose }) {
  return (
    <Dialog
      open={open}
      title={title}
      onClose={onClose}
      footer={
        <>
          <button type="button" class="button" onClick={onClose}>
            Keep it
          </button>
          <button
            type="button"
            class={`button ${danger ? "button-danger" : "button-primary"}`}
            disabled={busy}
            onClick={onConfirm}
          >
            {busy ? "Working…" : confirmLabel}
          </button>
        </>
      }
    >
      <p>{message}</p>
      <ErrorNote error={error} />
    </Dialog>
  );
}

// Tabs with the WAI-ARIA pattern: arrow keys move between tabs.
export function Tabs({ tabs, current, onChange, label }) {
  const refs = useRef({});
  const keys = tabs.map((t) => t.id);
  const onKey = (event) => {
    const index = keys.indexOf(current);
    let next = null;
    if (event.key === "ArrowRight") next = keys[(index + 1) % keys.length];
    if (event.key === "ArrowLeft") next = keys[(index - 1 + keys.length) % keys.length];
    if (event.key === "Home") next = keys[0];
    if (event.key === "End") next = keys[keys.length - 1];
    if (next) {
      event.preventDefault();
      onChange(next);
      refs.current[next] && refs.current[next].focus();
    }
  };
  return (
    <div class="tabs" role="tablist" aria-label={label} onKeyDown={onKey}>
      {tabs.map((tab) => (
        <button
          type="button"
          role="tab"
          id={`tab-${tab.id}`}
          aria-controls={`panel-${tab.id}`}
          aria-selected={tab.id === current ? "true" : "false"}
          tabIndex={tab.id === current ? 0 : -1}
          class={`tab ${tab.id === current ? "tab-current" : ""}`}
          ref={(el) => (refs.current[tab.id] = el)}
          onClick={() => onChange(tab.id)}
        >
          {tab.label}
          {tab.count ? <span class="tab-count">{tab.count}</span> : null}
        </button>
      ))}
    </div>
  );
}

export function TabPanel({ id, children }) {
  return (
    <div role="tabpanel" id={`panel-${id}`} aria-labelledby={`tab-${id}`} class="tab-panel">
      {children}
    </div>
  );
}

let fieldCounter = 0;
export function useId(prefix = "f") {
  const ref = useRef(null);
  if (ref.current === null) ref.current = `${prefix}-${++fieldCounter}`;
  return ref.current;
}

// A labelled form control with an optional hint and error, wired with aria-describedby.
export function Field({ label, hint, error, warning, children, id: given, wide }) {
  const generated = useId("field");
  const id = given || generated;
  const hintId = hint ? `${id}-hint` : undefined;
  const errorId = error || warning ? `${id}-msg` : undefined;
  const describedBy = [hintId, errorId].filter(Boolean).join(" ") || undefined;
  const control =
    typeof children === "function" ? children({ id, "aria-describedby": describedBy, "aria-invalid": error ? "true" : undefined }) : children;
  return (
    <div class={`field ${wide ? "field-wide" : ""} ${error ? "field-error" : ""}`}>
      <label for={id}>{label}</label>
      {control}
      {hint ? (
        <small id={hintId} class="hint">
          {hint}
        </small>
      ) : null}
      {error ? (
        <small id={errorId} class="field-message field-message-error">
          {error}
        </small>
      ) : warning ? (
        <small id={errorId} class="field-message field-message-warning">
          {warning}
        </small>
      ) : null}
    </div>
  );
}

export function CopyButton({ text, label = "Copy" }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    setDone(true);
    setTimeout(() => setDone(false), 1500);
  };
  return (
    <button type="button" class="button button-small" onClick={copy} aria-live="polite">
      {done ? "Copied" : label}
    </button>
  );
}

export function Section({ title, id, children, actions, description }) {
  const headingId = `${id || title.replace(/\W+/g, "-").toLowerCase()}-title`;
  return (
    <section class="card" aria-labelledby={headingId} id={id}>
      <div class="card-head">
        <h2 id={headingId}>{title}</h2>
        {actions ? <div class="card-actions">{actions}</div> : null}
      </div>
      {description ? <p class="muted card-description">{description}</p> : null}
      {children}
    </section>
  );
}

// Re-render every `ms` (for ages like "3 min ago").
export function useTick(ms = 30000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}
