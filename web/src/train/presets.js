// Starting points for the usual LoRA trainings, in SimpleTuner's own argument names.

const COMMON = {
  "--model_type": "lora",
  "--lora_rank": 16,
  "--lora_alpha": 16,
  "--learning_rate": 1e-4,
  "--lr_scheduler": "constant_with_warmup",
  "--lr_warmup_steps": 100,
  "--train_batch_size": 1,
  "--gradient_accumulation_steps": 1,
  "--gradient_checkpointing": true,
  "--optimizer": "adamw_bf16",
  "--mixed_precision": "bf16",
  "--resolution": 1024,
  "--resolution_type": "pixel_area",
  "--checkpointing_steps": 250,
  "--validation_steps": 250,
  "--validation_prompt": "a photo of sks person",
  "--seed": 42,
  "--report_to": "none",
};

export const PRESETS = {
  flux: {
    label: "Flux LoRA",
    description: "FLUX.1-dev, rank 16, 1000 steps at 1024 px. About 30–60 minutes on one L40S.",
    config: {
      "--model_family": "flux",
      "--pretrained_model_name_or_path": "black-forest-labs/FLUX.1-dev",
      "--output_dir": "/outputs/flux-lora",
      "--max_train_steps": 1000,
      "--base_model_precision": "int8-quanto",
      ...COMMON,
    },
  },
  sdxl: {
    label: "SDXL LoRA",
    description: "Stable Diffusion XL base 1.0, rank 16, 2000 steps at 1024 px.",
    config: {
      "--model_family": "sdxl",
      "--pretrained_model_name_or_path": "stabilityai/stable-diffusion-xl-base-1.0",
      "--output_dir": "/outputs/sdxl-lora",
      "--max_train_steps": 2000,
      ...COMMON,
    },
  },
  sd3: {
    label: "SD3 LoRA",
    description: "Stable Diffusion 3.5 Large, rank 16, 1500 steps at 1024 px.",
    config: {
      "--model_family": "sd3",
      "--pretrained_model_name_or_path": "stabilityai/stable-diffusion-3.5-large",
      "--output_dir": "/outputs/sd3-lora",
      "--max_train_steps": 1500,
      ...COMMON,
      "--learning_rate": 5e-5,
    },
  },
};

export function newDataset(index = 0) {
  return {
    id: index ? `training-images-${index + 1}` : "training-images",
    type: "local",
    dataset_type: "image",
    instance_data_dir: "",
    caption_strategy: "textfile",
    resolution: 1024,
    resolution_type: "pixel_area",
    repeats: 0,
  };
}

export function fromPreset(key) {
  const preset = PRESETS[key];
  return {
    config: { ...preset.config },
    datasets: [newDataset()],
    publishing: { destination: "none" },
  };
}

export const MODEL_FAMILIES = [
  ["flux", "Flux"],
  ["sdxl", "SDXL"],
  ["sd3", "SD3 / SD3.5"],
  ["sd1x", "SD 1.x"],
  ["sd2x", "SD 2.x"],
  ["pixart_sigma", "PixArt Sigma"],
  ["auraflow", "AuraFlow"],
  ["kolors", "Kolors"],
  ["hidream", "HiDream"],
  ["qwen_image", "Qwen-Image"],
  ["chroma", "Chroma"],
  ["wan", "Wan (video)"],
  ["ltxvideo", "LTX Video"],
];
