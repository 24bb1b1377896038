// Checks a config for the mistakes people make most; errors stop a save or submit, warnings do not.
import { MODEL_FAMILIES } from "./presets.js";

export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const FAMILIES = new Set(MODEL_FAMILIES.map(([id]) => id));

function num(value) {
  if (value === "" || value === null || value === undefined) return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : NaN;
}

export function validate({ name, config, datasets, publishing }) {
  const errors = {};
  const warnings = {};
  const c = config;
  if (!name || !NAME_PATTERN.test(name))
    errors.name = "Use letters, digits, dots, dashes or underscores (up to 128), starting with a letter or digit.";

  const family = c["--model_family"];
  if (!family) errors["--model_family"] = "Choose the model family.";
  else if (!FAMILIES.has(family)) warnings["--model_family"] = `“${family}” is not a family this form knows; check the spelling.`;
  if (!c["--pretrained_model_name_or_path"]) errors["--pretrained_model_name_or_path"] = "Name the base model (a Hugging Face repo or a path).";
  const type = c["--model_type"] || "lora";
  if (type !== "lora" && type !== "full") errors["--model_type"] = "Choose LoRA or full fine-tune.";

  const steps = num(c["--max_train_steps"]);
  if (steps === null) errors["--max_train_steps"] = "Set how many steps to train.";
  else if (!Number.isInteger(steps) || steps <= 0) errors["--max_train_steps"] = "Steps must be a whole number above 0.";
  else if (steps > 100000) warnings["--max_train_steps"] = "Over 100,000 steps: this will take days and cost a lot.";

  const lr = num(c["--learning_rate"]);
  if (lr === null) errors["--learning_rate"] = "Set the learning rate.";
  else if (Number.isNaN(lr) || lr <= 0) errors["--learning_rate"] = "The learning rate must be a number above 0, such as 1e-4.";
  else if (lr > 1e-2) warnings["--learning_rate"] = "Above 0.01 training usually diverges; LoRAs use about 1e-4.";
  else if (type === "full" && lr > 1e-4) warnings["--learning_rate"] = "Full fine-tunes usually use 1e-5 to 5e-5.";

  if (type === "lora") {
    const rank = num(c["--lora_rank"]);
    if (rank === null || Number.isNaN(rank) || !Number.isInteger(rank) || rank < 1) errors["--lora_rank"] = "The LoRA rank must be a whole number of at least 1.";
    else if (rank > 256) warnings["--lora_rank"] = "A rank above 256 gives very large files for little gain.";
  } else if (family === "flux" || family === "sd3") {
    warnings["--model_type"] = "A full fine-tune of this family needs 80 GB GPUs; LoRA works on one L40S.";
  }

  for (const key of ["--train_batch_size", "--gradient_accumulation_steps"]) {
    const value = num(c[key]);
    if (value !== null && (Number.isNaN(value) || !Number.isInteger(value) || value < 1)) errors[key] = "Must be a whole number of at least 1.";
  }
  const batch = num(c["--train_batch_size"]);
  if (batch && batch > 8 && (family === "flux" || family === "sd3")) warnings["--train_batch_size"] = "A batch this large rarely fits in GPU memory at 1024 px.";

  const resolution = num(c["--resolution"]);
  if (resolution !== null) {
    if (Number.isNaN(resolution) || resolution <= 0) errors["--resolution"] = "The resolution must be a number above 0.";
    else if (resolution >= 64 && resolution % 64 !== 0) warnings["--resolution"] = "Use a multiple of 64 (such as 512, 768, 1024).";
    else if (resolution >= 64 && resolution < 512 && family !== "sd1x") warnings["--resolution"] = "This model was trained at 1024 px; below 512 px results suffer.";
  }
  if (c["--mixed_precision"] === "fp16" && (family === "flux" || family === "sd3"))
    warnings["--mixed_precision"] = "This family is unstable in fp16; use bf16.";

  for (const key of ["--validation_steps", "--checkpointing_steps"]) {
    const value = num(c[key]);
    if (value !== null && steps && value > steps) warnings[key] = "Larger than the number of steps: it never happens.";
  }

  const ids = new Set();
  const images = datasets.filter((d) => (d.dataset_type || "image") === "image");
  if (!datasets.length) errors.datasets = "Add at least one dataset.";
  else if (!images.length) errors.datasets = "Add a dataset of images to train on.";
  datasets.forEach((d, index) => {
    const at = (field) => `dataset.${index}.${field}`;
    if (!d.id) errors[at("id")] = "Give the dataset a name.";
    else if (ids.has(d.id)) errors[at("id")] = "Two datasets have this name; names must be unique.";
    ids.add(d.id);
    if (d.type === "local" && (d.dataset_type || "image") === "image") {
      if (!d.instance_data_dir) errors[at("instance_data_dir")] = "The folder with the images (on the server's machine).";
      else if (!d.instance_data_dir.startsWith("/") && !/^[A-Za-z]:[\\/]/.test(d.instance_data_dir) && !d.instance_data_dir.startsWith("~"))
        warnings[at("instance_data_dir")] = "A relative path is read from where the server was started; an absolute path is safer.";
    }
    if (d.caption_strategy === "instanceprompt" && !d.instance_prompt) errors[at("instance_prompt")] = "This caption strategy needs the prompt to use.";
    const r = num(d.resolution);
    if (r !== null && (Number.isNaN(r) || r <= 0)) errors[at("resolution")] = "The resolution must be a number above 0.";
  });

  if (publishing.destination === "huggingface") {
    if (!publishing.hub_model_id) errors["publishing.hub_model_id"] = "Name the Hugging Face repository, such as username/my-lora.";
    else if (!/^[\w.-]+\/[\w.-]+$/.test(publishing.hub_model_id)) errors["publishing.hub_model_id"] = "Use the form username/repository.";
  } else if (publishing.destination === "s3") {
    if (!publishing.s3_bucket) errors["publishing.s3_bucket"] = "Name the bucket.";
    if (publishing.s3_endpoint_url && !/^https?:\/\//.test(publishing.s3_endpoint_url))
      errors["publishing.s3_endpoint_url"] = "The endpoint is a URL starting with https:// (or http://).";
  }
  return { errors, warnings, ok: Object.keys(errors).length === 0 };
}
