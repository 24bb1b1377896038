// The pre-submit dialog: provider and hardware, upload summary with excluded files, consent,
// cost estimate and spending limits, run name, Submit.
import { useEffect, useMemo, useState } from "preact/hooks";
import { api, optional } from "../api.js";
import { Dialog, ErrorNote, Field, Loading, Notice } from "../components.jsx";
import { estimateOf, money } from "../format.js";
import { navigate } from "../router.js";
import { CostLimitStatus, useCostLimit } from "./cost-limit.jsx";
import { UploadSummary } from "./upload-summary.jsx";

function randomKey() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return "ui-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function submissionPublishing(publishing) {
  const d = publishing.destination || "none";
  if (d === "huggingface") return { destination: "huggingface", push_to_hub: true, hub_model_id: publishing.hub_model_id, private: publishing.private !== false };
  if (d === "s3") {
    const keys = ["s3_endpoint_url", "s3_bucket", "s3_base_path", "s3_region", "s3_access_key", "s3_secret_key"];
    return { destination: "s3", ...Object.fromEntries(keys.filter((k) => publishing[k]).map((k) => [k, publishing[k]])) };
  }
  if (d === "local") return { destination: "local" };
  // "Keep it at the provider": say so, or a server with a public URL delivers back to itself.
  return { destination: "none" };
}

export function useHardware(provider) {
  const [state, setState] = useState({ loading: true, list: [] });
  useEffect(() => {
    if (!provider) return;
    setState({ loading: true, list: [] });
    optional(`/api/cloud/providers/${provider}/hardware`)
      .then(({ available, data }) => {
        const list = available ? data.hardware || data.profiles || data.items || (Array.isArray(data) ? data : []) : [];
        setState({ loading: false, available, list });
      })
      .catch(() => setState({ loading: false, available: false, list: [] }));
  }, [provider]);
  return state;
}

export function SubmitDialog({ open, onClose, configName, publishing, providers, defaultRunName }) {
  const [provider, setProvider] = useState("");
  const [hardware, setHardware] = useState("");
  const [runName, setRunName] = useState("");
  const [consent, setConsent] = useState(false);
  const [preview, setPreview] = useState(null);
  const [previewError, setPreviewError] = useState(null);
  const [previewing, setPreviewing] = useState(false);
  const [submitting, setSubmitting] = useState(false);
  const [submitError, setSubmitError] = useState(null);
  const [key, setKey] = useState(randomKey);
  const hw = useHardware(provider);
  const limits = useCostLimit([open]);
  const providerInfo = providers.find((p) => p.provider === provider);

  useEffect(() => {
    if (!open) return;
    setKey(randomKey());
    setConsent(false);
    setSubmitError(null);
    setRunName(defaultRunName || "");
    if (!provider && providers.length) setProvider(providers.find((p) => p.token?.configured)?.provider || providers[0].provider);
  }, [open]);
  useEffect(() => {
    if (providerInfo && !hardware) setHardware(providerInfo.settings?.default_hardware || "");
  }, [providerInfo]);

  const body = useMemo(
    () => ({
      config_name_to_load: configName,
      tracker_run_name: runName.trim() || undefined,
      hardware: hardware || undefined,
      publishing: submissionPublishing(publishing) || undefined,
    }),
    [configName, runName, hardware, publishing],
  );

  useEffect(() => {
    if (!open || !provider || !configName) return;
    let cancelled = false;
    setPreviewing(true);
    setPreviewError(null);
    api("/api/cloud/jobs/preview", { method: "POST", query: { provider }, body: { ...body, tracker_run_name: undefined } })
      .then((reply) => !cancelled && setPreview(reply))
      .catch((error) => !cancelled && (setPreview(null), setPreviewError(error)))
      .finally(() => !cancelled && setPreviewing(false));
    return () => {
      cancelled = true;
    };
  }, [open, provider, hardware, configName]);

  const summary = preview && preview.upload_summary;
  const neverUpload = preview && preview.consent_mode === "never_upload" && preview.uploads_local_data;
  const tooLarge = summary && !summary.fits_upload_limit;
  const needsConsent = preview && preview.needs_upload_consent;
  const estimate = estimateOf(preview);
  const canSubmit = preview && !neverUpload && !tooLarge && (!needsConsent || consent) && !submitting && providerInfo?.token?.configured !== false;

  const submit = async () => {
    setSubmitting(true);
    setSubmitError(null);
    try {
      const reply = await api("/api/cloud/jobs/submit", {
        method: "POST",
        query: { provider },
        body: { ...body, idempotency_key: key, upload_consent: preview.uploads_local_data ? consent || !needsConsent : undefined },
      });
      onClose();
      if (reply.warnings && reply.warnings.length) sessionStorage.setItem(`cloudtuner-warnings:${reply.job_id}`, JSON.stringify(reply.warnings));
      navigate(`/jobs/${reply.job_id}`);
    } catch (error) {
      setSubmitError(error);
    } finally {
      setSubmitting(false);
    }
  };

  return (
    <Dialog
      open={open}
      onClose={onClose}
      title="Train in Cloud"
      wide
      footer={
        <>
          <button type="button" class="button" onClick={onClose}>
            Back to the config
          </button>
          <button type="button" class="button button-primary" disabled={!canSubmit} onClick={submit}>
            {submitting ? "Submitting…" : "Submit"}
          </button>
        </>
      }
    >
      <div class="form-grid">
        <Field label="Provider">
          {(props) => (
            <select {...props} value={provider} onChange={(e) => { setProvider(e.target.value); setHardware(""); }}>
              {providers.map((p) => (
                <option value={p.provider}>
                  {p.provider}
                  {p.token && !p.token.configured ? " (no token)" : ""}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label="Hardware" hint={hw.available ? null : "Blank: the provider's default (Replicate: one L40S)."}>
          {(props) =>
            hw.available && hw.list.length ? (
              <select {...props} value={hardware} onChange={(e) => setHardware(e.target.value)}>
                <option value="">Provider default</option>
                {hw.list
                  .filter((h) => h.available !== false)
                  .map((h) => (
                    <option value={h.sku || h.id || h.name}>
                      {h.name || h.sku} {h.price_per_hour != null ? `— ${money(h.price_per_hour)}/h` : ""}
                      {h.default ? " (default)" : ""}
                    </option>
                  ))}
              </select>
            ) : (
              <input {...props} value={hardware} placeholder="gpu-l40s" onInput={(e) => setHardware(e.target.value.trim())} />
            )
          }
        </Field>
        <Field label="Run name (optional)" hint="Shown in the job list and passed to the trainer as tracker_run_name." wide>
          {(props) => <input {...props} value={runName} onInput={(e) => setRunName(e.target.value)} maxLength={255} />}
        </Field>
      </div>
      {providerInfo && providerInfo.token && !providerInfo.token.configured ? (
        <Notice kind="warning" title={`${provider} has no API token`}>
          Add one in <a href="#/settings" onClick={onClose}>Settings</a> before submitting.
        </Notice>
      ) : null}

      <h3>Upload</h3>
      {previewing && !preview ? <Loading label="Scanning the datasets…" /> : null}
      <ErrorNote error={previewError}>The submission cannot be previewed</ErrorNote>
      {preview && !preview.uploads_local_data ? <p class="muted">No local data is uploaded for this job.</p> : null}
      {summary ? <UploadSummary summary={summary} /> : null}
      {neverUpload ? (
        <Notice kind="error" title="Uploads are turned off">
          The consent setting is “never upload”, and this job needs its local datasets uploaded. Change it in{" "}
          <a href="#/settings" onClick={onClose}>Settings</a>, or use datasets stored in S3 or on Hugging Face.
        </Notice>
      ) : null}
      {preview && preview.uploads_local_data && !neverUpload ? (
        needsConsent ? (
          <label class="check consent">
            <input type="checkbox" checked={consent} onChange={(e) => setConsent(e.target.checked)} />
            I agree to upload these files to {provider}. They are deleted there after training.
          </label>
        ) : (
          <p class="muted small">Uploads are allowed without asking (consent setting “always allow”).</p>
        )
      ) : null}

      <h3>Cost</h3>
      {estimate ? (
        <p data-testid="estimate">
          Estimated {estimate.low !== estimate.high ? `${money(estimate.low)} – ${money(estimate.high)}` : money(estimate.low)}
          {estimate.basis ? <span class="muted small"> ({typeof estimate.basis === "string" ? estimate.basis : JSON.stringify(estimate.basis)})</span> : null}
        </p>
      ) : (
        <p class="muted small">
          {preview ? "No estimate from this server yet (issue 5). Replicate bills per second of GPU time while the job runs." : ""}
        </p>
      )}
      {preview && Array.isArray(preview.cost_limits) ? (
        <CostLimitStatus state={limits} limits={preview.cost_limits} compact />
      ) : (
        <CostLimitStatus state={limits} compact />
      )}
      <ErrorNote error={submitError}>The job was not submitted</ErrorNote>
    </Dialog>
  );
}
