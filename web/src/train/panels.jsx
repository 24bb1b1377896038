// The Model / Training / Dataloader / Publishing panels that edit a config.
import { useState } from "preact/hooks";
import { Field, Notice } from "../components.jsx";
import { MODEL_FAMILIES, newDataset } from "./presets.js";

const MODEL_FIELDS = [
  { key: "--model_family", label: "Model family", type: "select", options: MODEL_FAMILIES },
  { key: "--model_type", label: "Training type", type: "select", options: [["lora", "LoRA"], ["full", "Full fine-tune"]] },
  { key: "--pretrained_model_name_or_path", label: "Base model", type: "text", hint: "A Hugging Face repository, such as black-forest-labs/FLUX.1-dev.", wide: true },
  { key: "--lora_rank", label: "LoRA rank", type: "int", hint: "16 suits most subjects; 32–64 for styles.", when: (c) => (c["--model_type"] || "lora") === "lora" },
  { key: "--lora_alpha", label: "LoRA alpha", type: "int", when: (c) => (c["--model_type"] || "lora") === "lora" },
  {
    key: "--base_model_precision",
    label: "Base model precision",
    type: "select",
    options: [["", "As published"], ["int8-quanto", "int8 (quanto)"], ["fp8-torchao", "fp8 (torchao)"], ["no_change", "No change"]],
    hint: "Quantising the frozen base model saves GPU memory.",
  },
  { key: "--output_dir", label: "Output folder (on the GPU machine)", type: "text", wide: true },
];

const TRAINING_FIELDS = [
  { key: "--max_train_steps", label: "Training steps", type: "int" },
  { key: "--learning_rate", label: "Learning rate", type: "float", hint: "1e-4 for LoRA, 1e-5 for full fine-tunes." },
  {
    key: "--lr_scheduler",
    label: "Learning-rate schedule",
    type: "select",
    options: [["constant", "Constant"], ["constant_with_warmup", "Constant after warm-up"], ["cosine", "Cosine"], ["polynomial", "Polynomial"], ["linear", "Linear"]],
  },
  { key: "--lr_warmup_steps", label: "Warm-up steps", type: "int" },
  { key: "--train_batch_size", label: "Batch size", type: "int" },
  { key: "--gradient_accumulation_steps", label: "Gradient accumulation", type: "int" },
  {
    key: "--optimizer",
    label: "Optimizer",
    type: "select",
    options: [["adamw_bf16", "AdamW (bf16)"], ["optimi-lion", "Lion"], ["prodigy", "Prodigy"], ["adamw", "AdamW"], ["adafactor", "Adafactor"]],
  },
  { key: "--mixed_precision", label: "Mixed precision", type: "select", options: [["bf16", "bf16"], ["fp16", "fp16"], ["no", "off (fp32)"]] },
  { key: "--resolution", label: "Resolution (px)", type: "int" },
  { key: "--seed", label: "Seed", type: "int" },
  { key: "--checkpointing_steps", label: "Save a checkpoint every … steps", type: "int" },
  { key: "--validation_steps", label: "Validate every … steps", type: "int" },
  { key: "--validation_prompt", label: "Validation prompt", type: "text", wide: true },
  { key: "--gradient_checkpointing", label: "Gradient checkpointing (less memory, a little slower)", type: "checkbox" },
];

export const KNOWN_KEYS = new Set([...MODEL_FIELDS, ...TRAINING_FIELDS].map((f) => f.key).concat(["--push_to_hub", "--hub_model_id"]));

function parseValue(type, raw) {
  if (raw === "") return undefined;
  if (type === "int") {
    const n = Number(raw);
    return Number.isFinite(n) ? n : raw;
  }
  if (type === "float") {
    const n = Number(raw);
    return Number.isFinite(n) ? n : raw;
  }
  return raw;
}

function ArgField({ field, value, onChange, error, warning }) {
  if (field.type === "checkbox") {
    return (
      <div class="field field-check">
        <label class="check">
          <input type="checkbox" checked={Boolean(value)} onChange={(e) => onChange(field.key, e.target.checked)} />
          {field.label}
        </label>
      </div>
    );
  }
  return (
    <Field label={field.label} hint={field.hint} error={error} warning={warning} wide={field.wide}>
      {(props) =>
        field.type === "select" ? (
          <select {...props} value={value ?? ""} onChange={(e) => onChange(field.key, e.target.value || undefined)}>
            {value && !field.options.some(([id]) => id === value) ? <option value={value}>{value}</option> : null}
            {field.options.map(([id, label]) => (
              <option value={id}>{label}</option>
            ))}
          </select>
        ) : (
          <input
            {...props}
            type="text"
            inputMode={field.type === "int" ? "numeric" : field.type === "float" ? "decimal" : undefined}
            value={value ?? ""}
            onInput={(e) => onChange(field.key, parseValue(field.type, e.target.value.trim() === "" ? "" : e.target.value))}
          />
        )
      }
    </Field>
  );
}

function ArgFields({ fields, config, setArg, check }) {
  return (
    <div class="form-grid">
      {fields
        .filter((f) => !f.when || f.when(config))
        .map((f) => (
          <ArgField field={f} value={config[f.key]} onChange={setArg} error={check.errors[f.key]} warning={check.warnings[f.key]} />
        ))}
    </div>
  );
}

export function ModelPanel({ config, setArg, check }) {
  return <ArgFields fields={MODEL_FIELDS} config={config} setArg={setArg} check={check} />;
}

export function TrainingPanel({ config, setArg, setConfig, check }) {
  const extra = Object.fromEntries(Object.entries(config).filter(([k]) => !KNOWN_KEYS.has(k)));
  const [text, setText] = useState(null);
  const [problem, setProblem] = useState(null);
  const shown = text ?? JSON.stringify(extra, null, 2);
  const applyExtra = (value) => {
    setText(value);
    try {
      const parsed = JSON.parse(value || "{}");
      if (typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("Write an object: {\"--argument\": value}.");
      const known = Object.fromEntries(Object.entries(config).filter(([k]) => KNOWN_KEYS.has(k)));
      setConfig({ ...known, ...parsed });
      setProblem(null);
    } catch (e) {
      setProblem(e.message);
    }
  };
  return (
    <>
      <ArgFields fields={TRAINING_FIELDS} config={config} setArg={setArg} check={check} />
      <details class="advanced">
        <summary>Other SimpleTuner arguments ({Object.keys(extra).length})</summary>
        <Field label="Arguments as JSON" hint='Any argument of SimpleTuner’s config.json, such as {"--lora_type": "lycoris"}.' error={problem} wide>
          {(props) => <textarea {...props} rows={8} class="mono" value={shown} onInput={(e) => applyExtra(e.target.value)} />}
        </Field>
      </details>
    </>
  );
}

const DATASET_TYPES = [["image", "Images"], ["text_embeds", "Text embeds cache"], ["image_embeds", "Image embeds cache"]];
const CAPTIONS = [["textfile", "A .txt file next to each image"], ["filename", "The file name"], ["instanceprompt", "One prompt for every image"], ["parquet", "A parquet table"], ["jsonl", "A JSONL file"]];

export function DataloaderPanel({ datasets, setDatasets, check }) {
  const change = (index, key, value) => {
    const next = datasets.slice();
    next[index] = { ...next[index], [key]: value };
    if (value === undefined || value === "") delete next[index][key];
    setDatasets(next);
  };
  const err = (index, key) => check.errors[`dataset.${index}.${key}`];
  const warn = (index, key) => check.warnings[`dataset.${index}.${key}`];
  return (
    <div class="stack">
      {check.errors.datasets ? <Notice kind="error">{check.errors.datasets}</Notice> : null}
      {datasets.map((d, index) => (
        <fieldset class="dataset-card">
          <legend>Dataset {index + 1}{d.id ? `: ${d.id}` : ""}</legend>
          <div class="form-grid">
            <Field label="Name (id)" error={err(index, "id")}>
              {(props) => <input {...props} value={d.id} onInput={(e) => change(index, "id", e.target.value)} />}
            </Field>
            <Field label="Kind">
              {(props) => (
                <select {...props} value={d.dataset_type || "image"} onChange={(e) => change(index, "dataset_type", e.target.value)}>
                  {DATASET_TYPES.map(([id, label]) => <option value={id}>{label}</option>)}
                </select>
              )}
            </Field>
            <Field label="Stored" hint="Local folders are packed and uploaded when you submit.">
              {(props) => (
                <select {...props} value={d.type} onChange={(e) => change(index, "type", e.target.value)}>
                  <option value="local">On this machine (local)</option>
                  <option value="aws">S3 bucket (aws)</option>
                  <option value="huggingface">Hugging Face dataset</option>
                </select>
              )}
            </Field>
            {d.type === "local" && (d.dataset_type || "image") === "image" ? (
              <Field label="Image folder" error={err(index, "instance_data_dir")} warning={warn(index, "instance_data_dir")} hint="On the machine that runs the cloudtuner server." wide>
                {(props) => <input {...props} value={d.instance_data_dir || ""} placeholder="/data/datasets/my-dataset" onInput={(e) => change(index, "instance_data_dir", e.target.value)} />}
              </Field>
            ) : null}
            {(d.dataset_type || "image") === "image" ? (
              <>
                <Field label="Captions">
                  {(props) => (
                    <select {...props} value={d.caption_strategy || "textfile"} onChange={(e) => change(index, "caption_strategy", e.target.value)}>
                      {CAPTIONS.map(([id, label]) => <option value={id}>{label}</option>)}
                    </select>
                  )}
                </Field>
                {d.caption_strategy === "instanceprompt" ? (
                  <Field label="Prompt for every image" error={err(index, "instance_prompt")}>
                    {(props) => <input {...props} value={d.instance_prompt || ""} onInput={(e) => change(index, "instance_prompt", e.target.value)} />}
                  </Field>
                ) : null}
                <Field label="Resolution (px)" error={err(index, "resolution")}>
                  {(props) => (
                    <input {...props} inputMode="numeric" value={d.resolution ?? ""} onInput={(e) => change(index, "resolution", e.target.value === "" ? undefined : Number(e.target.value))} />
                  )}
                </Field>
                <Field label="Repeats" hint="Extra passes over small datasets per epoch.">
                  {(props) => (
                    <input {...props} inputMode="numeric" value={d.repeats ?? ""} onInput={(e) => change(index, "repeats", e.target.value === "" ? undefined : Number(e.target.value))} />
                  )}
                </Field>
              </>
            ) : null}
          </div>
          <button type="button" class="button button-small" onClick={() => setDatasets(datasets.filter((_, i) => i !== index))} disabled={datasets.length === 1}>
            Remove dataset {index + 1}
          </button>
        </fieldset>
      ))}
      <button type="button" class="button" onClick={() => setDatasets([...datasets, newDataset(datasets.length)])}>
        Add a dataset
      </button>
    </div>
  );
}

export function PublishingPanel({ publishing, setPublishing, check, publicUrl }) {
  const set = (key, value) => setPublishing({ ...publishing, [key]: value });
  const d = publishing.destination || "none";
  const options = [
    ["none", "Keep it at the provider", "Nothing is delivered; download it from the provider yourself."],
    ["huggingface", "Hugging Face Hub", "Pushed to your account (recommended). The server needs HF_TOKEN."],
    ["s3", "An S3 bucket", "AWS S3, MinIO, Backblaze B2, Cloudflare R2…"],
    ["local", "Back to this server", "Into the data dir's cloud_outputs/ through the built-in S3 endpoint; needs a public URL."],
  ];
  return (
    <div class="stack">
      <fieldset class="radio-group">
        <legend>Where the trained model goes</legend>
        {options.map(([id, label, hint]) => (
          <label class="radio">
            <input type="radio" name="destination" value={id} checked={d === id} onChange={() => set("destination", id)} />
            <span>
              <strong>{label}</strong>
              <small class="hint">{hint}</small>
            </span>
          </label>
        ))}
      </fieldset>
      {d === "huggingface" ? (
        <div class="form-grid">
          <Field label="Repository" error={check.errors["publishing.hub_model_id"]} hint="username/my-lora">
            {(props) => <input {...props} value={publishing.hub_model_id || ""} onInput={(e) => set("hub_model_id", e.target.value.trim())} />}
          </Field>
          <div class="field field-check">
            <label class="check">
              <input type="checkbox" checked={publishing.private !== false} onChange={(e) => set("private", e.target.checked)} />
              Private repository
            </label>
          </div>
        </div>
      ) : null}
      {d === "s3" ? (
        <>
          <div class="form-grid">
            <Field label="Endpoint URL" error={check.errors["publishing.s3_endpoint_url"]} hint="Leave empty for AWS.">
              {(props) => <input {...props} value={publishing.s3_endpoint_url || ""} onInput={(e) => set("s3_endpoint_url", e.target.value.trim())} />}
            </Field>
            <Field label="Bucket" error={check.errors["publishing.s3_bucket"]}>
              {(props) => <input {...props} value={publishing.s3_bucket || ""} onInput={(e) => set("s3_bucket", e.target.value.trim())} />}
            </Field>
            <Field label="Folder (prefix)">
              {(props) => <input {...props} value={publishing.s3_base_path || ""} onInput={(e) => set("s3_base_path", e.target.value.trim())} />}
            </Field>
            <Field label="Region">
              {(props) => <input {...props} value={publishing.s3_region || ""} placeholder="us-east-1" onInput={(e) => set("s3_region", e.target.value.trim())} />}
            </Field>
            <Field label="Access key">
              {(props) => <input {...props} autocomplete="off" value={publishing.s3_access_key || ""} onInput={(e) => set("s3_access_key", e.target.value.trim())} />}
            </Field>
            <Field label="Secret key" hint="Sent with the job only; never saved in the config.">
              {(props) => <input {...props} type="password" autocomplete="off" value={publishing.s3_secret_key || ""} onInput={(e) => set("s3_secret_key", e.target.value)} />}
            </Field>
          </div>
        </>
      ) : null}
      {d === "local" ? (
        publicUrl ? (
          <Notice>Models come back to this server through {publicUrl}; find them in the job's artifacts.</Notice>
        ) : (
          <Notice kind="warning" title="This server has no public URL">
            The provider cannot reach this server to deliver the model. Set the public URL (for example an ngrok tunnel) in{" "}
            <a href="#/settings">Settings</a>.
          </Notice>
        )
      ) : null}
    </div>
  );
}
