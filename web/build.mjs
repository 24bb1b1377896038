// Builds the web UI into ../src/cloudtuner/web/static (index.html + assets/), which the server serves.
// Everything the page needs is bundled from npm packages here: nothing is loaded from another origin.
//   node build.mjs           one production build
//   node build.mjs --watch   rebuild on every change (reload the page by hand)
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "cloudtuner", "web", "static");
const assets = join(out, "assets");
const watch = process.argv.includes("--watch");

const options = {
  entryPoints: [join(here, "src", "main.jsx")],
  bundle: true,
  splitting: true,
  format: "esm",
  outdir: assets,
  entryNames: "[name]-[hash]",
  chunkNames: "chunk-[hash]",
  assetNames: "[name]-[hash]",
  minify: !watch,
  sourcemap: watch ? "inline" : false,
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  jsxImportSource: "preact",
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
  define: { "process.env.NODE_ENV": watch ? '"development"' : '"production"' },
};

function writeIndex(metafile) {
  const outputs = Object.entries(metafile.outputs);
  const entry = outputs.find(([, info]) => info.entryPoint && info.entryPoint.endsWith("main.jsx"));
  if (!entry) throw new Error("the build produced no entry script");
  const [script, info] = entry;
  const css = info.cssBundle;
  const rel = (p) => "/assets/" + p.split("/assets/").pop();
  const preloads = (info.imports || [])
    .filter((i) => i.kind === "import-statement")
    .map((i) => `<link rel="modulepreload" href="${rel(i.path)}">`)
    .join("");
  const template = readFileSync(join(here, "index.html"), "utf8");
  const html = template
    .replace("<!--STYLES-->", (css ? `<link rel="stylesheet" href="${rel(css)}">` : "") + preloads)
    .replace("<!--SCRIPT-->", `<script type="module" src="${rel(script)}"></script>`);
  writeFileSync(join(out, "index.html"), html);
  const files = readdirSync(assets);
  const digest = createHash("sha256").update(html).digest("hex").slice(0, 12);
  console.log(`web UI built: ${files.length} assets, index ${digest}, in ${out}`);
}

rmSync(out, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

if (watch) {
  const ctx = await esbuild.context({
    ...options,
    plugins: [{ name: "index", setup: (b) => b.onEnd((r) => r.metafile && writeIndex(r.metafile)) }],
  });
  await ctx.watch();
  console.log("watching web/src for changes");
} else {
  const result = await esbuild.build(options);
  writeIndex(result.metafile);
}
