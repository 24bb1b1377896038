// Train in Cloud: write or edit a saved config in the Model / Training / Dataloader / Publishing
// panels, then open the pre-submit dialog.
import { useEffect, useMemo, useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorNote, Field, Loading, Notice, TabPanel, Tabs } from "../components.jsx";
import { replaceParams } from "../router.js";
import { can } from "../session.js";
import { DataloaderPanel, ModelPanel, PublishingPanel, TrainingPanel } from "../train/panels.jsx";
import { PRESETS, fromPreset } from "../train/presets.js";
import { validate } from "../train/validate.js";
import { SubmitDialog } from "./submit-dialog.jsx";

const PUBLISHING_STORE = "cloudtuner-publishing:";
const SECRET_KEYS = ["s3_secret_key"];

// Publishing lives in the config where SimpleTuner has arguments for it (Hub); the rest (S3 without
// its secret, local) is remembered in this browser per config.
function publishingFor(name, config) {
  let stored = {};
  try {
    stored = JSON.parse(localStorage.getItem(PUBLISHING_STORE + name) || "{}");
  } catch {
    stored = {};
  }
  if (config["--push_to_hub"] && config["--hub_model_id"]) {
    return { ...stored, destination: "huggingface", hub_model_id: config["--hub_model_id"], private: config["--hub_private"] ?? stored.private };
  }
  return { destination: "none", ...stored };
}

function rememberPublishing(name, publishing) {
  const kept = Object.fromEntries(Object.entries(publishing).filter(([k]) => !SECRET_KEYS.includes(k)));
  localStorage.setItem(PUBLISHING_STORE + name, JSON.stringify(kept));
}

function configToSave(config, publishing) {
  const next = { ...config };
  delete next["--push_to_hub"];
  delete next["--hub_model_id"];
  if (publishing.destination === "huggingface") {
    next["--push_to_hub"] = true;
    next["--hub_model_id"] = publishing.hub_model_id;
  }
  return next;
}

function suggestName(config) {
  const family = config["--model_family"] || "model";
  return `${family}-${config["--model_type"] || "lora"}-${new Date().toISOString().slice(0, 10)}`;
}

export function TrainScreen({ route }) {
  const [configs, setConfigs] = useState(null);
  const [providers, setProviders] = useState([]);
  const [cloud, setCloud] = useState(null);
  const [loadError, setLoadError] = useState(null);
  const [name, setName] = useState(route.params.get("config") || "");
  const [savedName, setSavedName] = useState(null); // the saved config this draft came from
  const [draft, setDraft] = useState(null); // {config, datasets, publishing}
  const [dirty, setDirty] = useState(false);
  const [panel, setPanel] = useState("model");
  const [saving, setSaving] = useState(false);
  const [saveNote, setSaveNote] = useState(null);
  const [saveError, setSaveError] = useState(null);
  const [showErrors, setShowErrors] = useState(false);
  const [submitOpen, setSubmitOpen] = useState(false);
  const canEdit = can("config.edit");

  const refreshConfigs = () =>
    api("/api/configs")
      .then((reply) => setConfigs(reply.configs))
      .catch((e) => setLoadError(e));

  useEffect(() => {
    refreshConfigs();
    api("/api/cloud/providers").then((r) => setProviders(r.providers)).catch(() => setProviders([]));
    api("/api/cloud/settings").then(setCloud).catch(() => setCloud(null));
  }, []);

  const open = async (configName) => {
    setSaveNote(null);
    setSaveError(null);
    setShowErrors(false);
    if (!configName) {
      setDraft(null);
      setSavedName(null);
      return;
    }
    try {
      const saved = await api(`/api/configs/${encodeURIComponent(configName)}`);
      setName(saved.name);
      setSavedName(saved.name);
      setDraft({ config: saved.config, datasets: saved.dataloader_config, publishing: publishingFor(saved.name, saved.config) });
      setDirty(false);
      replaceParams({ config: saved.name });
    } catch (e) {
      setLoadError(e);
    }
  };
  useEffect(() => {
    const wanted = route.params.get("config");
    if (wanted) open(wanted);
  }, []);

  const startPreset = (key) => {
    const next = fromPreset(key);
    setDraft(next);
    setName(suggestName(next.config));
    setSavedName(null);
    setDirty(true);
    setShowErrors(false);
    setPanel("model");
    setSaveNote(null);
  };

  const check = useMemo(() => (draft ? validate({ name, ...draft }) : null), [draft, name]);
  const visibleCheck = check && (showErrors ? check : { ...check, errors: Object.fromEntries(Object.entries(check.errors).filter(([k]) => draft && k in draft.config && draft.config[k] !== undefined && draft.config[k] !== "")) });

  const update = (patch) => {
    setDraft((d) => ({ ...d, ...patch }));
    setDirty(true);
    setSaveNote(null);
  };
  const setArg = (key, value) => {
    const config = { ...draft.config };
    if (value === undefined) delete config[key];
    else config[key] = value;
    update({ config });
  };

  const save = async () => {
    setShowErrors(true);
    if (!check.ok) {
      setSaveError(new Error("Fix the fields marked in red first."));
      return false;
    }
    setSaving(true);
    setSaveError(null);
    try {
      const saved = await api(`/api/configs/${encodeURIComponent(name)}`, {
        method: "PUT",
        body: { config: configToSave(draft.config, draft.publishing), dataloader_config: draft.datasets },
      });
      rememberPublishing(saved.name, draft.publishing);
      setSavedName(saved.name);
      setDirty(false);
      setSaveNote(`Saved “${saved.name}”${saved.latest_commit ? ` (commit ${saved.latest_commit.slice(0, 8)})` : ""}.`);
      replaceParams({ config: saved.name });
      refreshConfigs();
      return true;
    } catch (e) {
      setSaveError(e);
      return false;
    } finally {
      setSaving(false);
    }
  };

  const trainInCloud = async () => {
    if (dirty || !savedName) {
      if (!canEdit) {
        setSaveError(new Error("You may not save configs; submit a saved one unchanged."));
        return;
      }
      if (!(await save())) return;
    }
    setSubmitOpen(true);
  };

  const errorCount = check ? Object.keys(check.errors).length : 0;
  const warningCount = check ? Object.keys(check.warnings).length : 0;
  const panelErrors = (prefixes) => (check && showErrors ? Object.keys(check.errors).filter((k) => prefixes.some((p) => k.startsWith(p))).length : 0);

  return (
    <div class="train-screen">
      <div class="page-head">
        <h1>Train in Cloud</h1>
      </div>
      <ErrorNote error={loadError}>Saved configs could not be loaded</ErrorNote>
      <section class="card" aria-labelledby="pick-title">
        <h2 id="pick-title">Config</h2>
        {configs === null ? (
          <Loading label="Loading saved configs…" />
        ) : (
          <div class="pick-row">
            <label class="inline-field">
              <span>Open a saved config</span>
              <select value={savedName || ""} onChange={(e) => open(e.target.value)}>
                <option value="">{configs.length ? "Choose…" : "No saved config yet"}</option>
                {configs.map((c) => (
                  <option value={c.name}>
                    {c.name}
                    {c.model_family ? ` (${c.model_family}${c.model_type ? " " + c.model_type : ""})` : ""}
                  </option>
                ))}
              </select>
            </label>
            {canEdit ? (
              <div class="presets" role="group" aria-label="Start a new config from a preset">
                <span class="muted">or start a new one:</span>
                {Object.entries(PRESETS).map(([key, preset]) => (
                  <button type="button" class="button" onClick={() => startPreset(key)} title={preset.description}>
                    {preset.label}
                  </button>
                ))}
              </div>
            ) : null}
          </div>
        )}
      </section>

      {draft ? (
        <>
          <section class="card" aria-labelledby="editor-title">
            <div class="card-head">
              <h2 id="editor-title">{savedName ? `Editing “${savedName}”` : "New config"}</h2>
              <div class="card-actions">
                {errorCount && showErrors ? <span class="error-text small">{errorCount} to fix</span> : null}
                {warningCount ? <span class="warning-text small">{warningCount} warning{warningCount === 1 ? "" : "s"}</span> : null}
                {dirty ? <span class="muted small">unsaved changes</span> : null}
              </div>
            </div>
            <div class="form-grid">
              <Field label="Config name" error={showErrors ? check.errors.name : null} hint="Saved on the server; every save is a commit in its history.">
                {(props) => <input {...props} value={name} disabled={!canEdit} onInput={(e) => { setName(e.target.value.trim()); setDirty(true); }} />}
              </Field>
            </div>
            <Tabs
              label="Config panels"
              current={panel}
              onChange={setPanel}
              tabs={[
                { id: "model", label: "Model", count: panelErrors(["--model", "--pretrained", "--lora", "--base"]) },
                { id: "training", label: "Training", count: panelErrors(["--max", "--learning", "--train", "--gradient", "--resolution", "--validation", "--checkpointing"]) },
                { id: "dataloader", label: "Dataloader", count: panelErrors(["dataset"]) },
                { id: "publishing", label: "Publishing", count: panelErrors(["publishing"]) },
              ]}
            />
            <fieldset disabled={!canEdit} class="bare">
              {panel === "model" ? <TabPanel id="model"><ModelPanel config={draft.config} setArg={setArg} check={visibleCheck} /></TabPanel> : null}
              {panel === "training" ? (
                <TabPanel id="training">
                  <TrainingPanel config={draft.config} setArg={setArg} setConfig={(config) => update({ config })} check={visibleCheck} />
                </TabPanel>
              ) : null}
              {panel === "dataloader" ? (
                <TabPanel id="dataloader">
                  <DataloaderPanel datasets={draft.datasets} setDatasets={(datasets) => update({ datasets })} check={showErrors ? check : { errors: {}, warnings: check.warnings }} />
                </TabPanel>
              ) : null}
              {panel === "publishing" ? (
                <TabPanel id="publishing">
                  <PublishingPanel publishing={draft.publishing} setPublishing={(publishing) => update({ publishing })} check={visibleCheck} publicUrl={cloud?.effective_public_url} />
                </TabPanel>
              ) : null}
            </fieldset>
          </section>
          {saveNote ? <Notice>{saveNote}</Notice> : null}
          <ErrorNote error={saveError}>Not saved</ErrorNote>
          <div class="action-bar">
            {canEdit ? (
              <button type="button" class="button" onClick={save} disabled={saving}>
                {saving ? "Saving…" : "Save config"}
              </button>
            ) : null}
            {can("job.submit") ? (
              <button type="button" class="button button-primary" onClick={trainInCloud} disabled={saving}>
                Train in Cloud
              </button>
            ) : null}
          </div>
          <SubmitDialog
            open={submitOpen}
            onClose={() => setSubmitOpen(false)}
            configName={savedName}
            publishing={draft.publishing}
            providers={providers}
          />
        </>
      ) : configs !== null ? (
        <p class="muted">Open a saved config or start from a preset to edit it and train.</p>
      ) : null}
    </div>
  );
}
