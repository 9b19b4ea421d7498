#!/usr/bin/env node
// Builds a JavaScript (or TypeScript) Durable Object into a dohost component.
//
//   node build/build.mjs <dir | entry.js> [-o out.wasm] [--class Name] [--wit DIR] [--world NAME]
//                        [--if-changed]
//   npm run build -- <dir | entry.js> -o out.wasm            (from sdk-js/)
//
// <dir> holds a package.json whose "main" names the entry module (default index.js) and, if the
// entry exports several Durable Object classes, "dohost": { "class": "Name" } picks one.
//
// Steps: (1) generate a small entry that imports the user's module and builds the WIT exports
// with the SDK's `exportObject`; (2) bundle it with esbuild, resolving "dohost:workers" (and
// "cloudflare:workers") to the SDK and leaving the WIT imports ("dohost:object/...") external;
// (3) componentize-js splices the WIT bindings into StarlingMonkey and snapshots it with Wizer.
//
// --if-changed skips the build when out.wasm is newer than every file that went into it, as
// listed in out.wasm.deps (written by each build): the user's bundled modules, the SDK, the
// build tools' lockfile and the WIT files. (The output is not byte-for-byte reproducible, so
// skipping also spares the host a recompilation.)

import { componentize } from "@bytecodealliance/componentize-js";
import * as esbuild from "esbuild";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const sdkDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const usage =
  "usage: build.mjs <dir | entry.js> [-o out.wasm] [--class Name] [--wit DIR] [--world NAME] [--if-changed]";

function fail(message) {
  console.error(`dohost-build-js: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { wit: resolve(sdkDir, "../wit"), world: "object" };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => argv[++i] ?? fail(`${arg} needs a value\n${usage}`);
    if (arg === "-o" || arg === "--out") opts.out = value();
    else if (arg === "--class") opts.className = value();
    else if (arg === "--wit") opts.wit = value();
    else if (arg === "--world") opts.world = value();
    else if (arg === "--if-changed") opts.ifChanged = true;
    else if (arg === "-h" || arg === "--help") {
      console.log(usage);
      process.exit(0);
    } else if (arg.startsWith("-") || opts.input) fail(`unexpected argument ${arg}\n${usage}`);
    else opts.input = arg;
  }
  if (!opts.input) fail(usage);
  return opts;
}

/** Finds the entry module, the class name and the default output name. */
async function resolveInput(input, opts) {
  if (!existsSync(input)) fail(`${input} does not exist`);
  if (!statSync(input).isDirectory()) {
    return {
      entry: input,
      className: opts.className,
      name: basename(input).replace(/\.[^.]*$/, ""),
    };
  }
  const manifestPath = join(input, "package.json");
  if (!existsSync(manifestPath)) fail(`${input} has no package.json`);
  let manifest;
  try {
    manifest = JSON.parse(await readFile(manifestPath, "utf8"));
  } catch (e) {
    fail(`${manifestPath}: ${e.message}`);
  }
  const entry = join(input, manifest.main ?? "index.js");
  if (!existsSync(entry)) fail(`${manifestPath} names ${entry} as "main", which does not exist`);
  return {
    entry,
    className: opts.className ?? manifest.dohost?.class,
    name: manifest.name?.replace(/^@.*\//, "") ?? basename(resolve(input)),
  };
}

/** Files under `dir`, recursively (node_modules excluded). */
function filesUnder(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter(
      (entry) => entry.isFile() && !join(entry.parentPath, entry.name).includes("node_modules"),
    )
    .map((entry) => join(entry.parentPath, entry.name));
}

/** Whether `out` exists and is newer than every file its depfile lists. */
function upToDate(out) {
  const depfile = `${out}.deps`;
  if (!existsSync(out) || !existsSync(depfile)) return false;
  const built = statSync(out).mtimeMs;
  const deps = readFileSync(depfile, "utf8").split("\n").filter(Boolean);
  return deps.every((file) => existsSync(file) && statSync(file).mtimeMs <= built);
}

/** Resolves the SDK's module names to its sources. */
const sdkResolver = {
  name: "dohost-sdk",
  setup(build) {
    build.onResolve({ filter: /^(dohost|cloudflare):workers$/ }, () => ({
      path: join(sdkDir, "src/workers.js"),
    }));
    build.onResolve({ filter: /^dohost:workers\/internal$/ }, () => ({
      path: join(sdkDir, "src/entry.js"),
    }));
    build.onResolve({ filter: /^cloudflare:/ }, (args) => ({
      errors: [{ text: `${args.path} is not available on dohost (only cloudflare:workers is)` }],
    }));
  },
};

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  // `npm run build` runs in sdk-js/; resolve the user's paths against where they typed them.
  const cwd = process.env.INIT_CWD ?? process.cwd();
  const input = resolve(cwd, opts.input);
  const { entry, className, name } = await resolveInput(input, opts);
  const out = resolve(cwd, opts.out ?? `${name}.wasm`);
  const wit = resolve(cwd, opts.wit);
  if (!existsSync(wit)) fail(`WIT directory ${wit} does not exist (use --wit DIR)`);

  if (opts.ifChanged && upToDate(out)) {
    console.error(`dohost-build-js: ${out} is up to date`);
    return;
  }

  const started = Date.now();
  const work = await mkdtemp(join(tmpdir(), "dohost-build-js-"));
  try {
    const glue = join(work, "entry.js");
    await writeFile(
      glue,
      [
        `import * as module from ${JSON.stringify(resolve(entry))};`,
        'import { exportObject } from "dohost:workers/internal";',
        `export const { handler, alarmHandler } = exportObject(module, ${JSON.stringify(className)});`,
        "",
      ].join("\n"),
    );
    const bundle = join(work, `${name}.js`);
    const { metafile } = await esbuild.build({
      entryPoints: [glue],
      outfile: bundle,
      bundle: true,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      // Prefer the builds packages publish for workerd / web workers.
      conditions: ["workerd", "worker", "browser"],
      mainFields: ["module", "main"],
      external: ["dohost:object/*"],
      plugins: [sdkResolver],
      logLevel: "warning",
      metafile: true,
    });

    const { component } = await componentize({
      sourcePath: bundle,
      witPath: wit,
      worldName: opts.world,
      // The object world exports its own request handler, not wasi:http/incoming-handler.
      disableFeatures: ["fetch-event"],
    });
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, component);
    const deps = new Set([
      ...Object.keys(metafile.inputs)
        .map((file) => resolve(file))
        .filter((file) => file !== glue),
      ...filesUnder(join(sdkDir, "src")),
      ...filesUnder(join(sdkDir, "build")),
      join(sdkDir, "package-lock.json"),
      ...filesUnder(wit),
    ]);
    if (statSync(input).isDirectory()) deps.add(join(input, "package.json"));
    await writeFile(`${out}.deps`, [...deps].join("\n") + "\n");
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const mb = (component.byteLength / 1e6).toFixed(1);
    console.error(`dohost-build-js: ${out} (${mb} MB) in ${seconds} s`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((e) => fail(e?.message ?? String(e)));
