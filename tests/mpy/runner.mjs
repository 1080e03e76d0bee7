// Run the portable tests inside real MicroPython (WebAssembly build) under Node.
//
//   node tests/mpy/runner.mjs [--portable-dir DIR] [--core-dir DIR] [--heapsize N[k|m]]
//
// Loads @micropython/micropython-webassembly-pyscript from $MPY_PREFIX
// (default <repo>/.mpy; install it with
//   npm install --prefix <repo>/.mpy @micropython/micropython-webassembly-pyscript@1.27.0),
// copies the core package (default <repo>/edge_agent) to /lib/<name>/ and the
// portable tests (default <repo>/tests/portable) to /mpytest/<name>/ inside the
// MicroPython filesystem, imports every test_*.py module, calls every callable
// attribute whose name starts with "test_" (sorted by name) and prints ONE JSON
// document on stdout:
//
//   {"micropython": "<sys.version>", "implementation": {"name":..., "version":[...]},
//    "results": [{"module", "test", "ok", "traceback", "output", "ms"}],
//    "import_errors": [{"module", "traceback"}],
//    "core_modules": [{"module", "ok", "traceback"}], "seconds": ...}
//
// Test failures do not change the exit status (0); only a broken harness does
// (2: bad arguments / missing dirs, 3: MicroPython package not installed).
// Progress lines go to stderr so a hang can be located.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const PKG = "@micropython/micropython-webassembly-pyscript";
const PKG_VERSION = "1.27.0";
const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");
const MAX_OUTPUT = 64 * 1024;

function die(code, msg) {
  process.stderr.write(`mpy runner: ${msg}\n`);
  process.exit(code);
}

function parseSize(s) {
  const m = /^(\d+)([kKmM]?)$/.exec(String(s).trim());
  if (!m) die(2, `bad size: ${s}`);
  const mult = { "": 1, k: 1024, m: 1024 * 1024 }[m[2].toLowerCase()];
  return parseInt(m[1], 10) * mult;
}

function parseArgs(argv) {
  const opts = {
    portableDir: path.join(REPO, "tests", "portable"),
    coreDir: path.join(REPO, "edge_agent"),
    heapsize: parseSize(process.env.MPY_HEAPSIZE || "64m"),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf("=");
    const key = eq >= 0 ? a.slice(0, eq) : a;
    const val = () => (eq >= 0 ? a.slice(eq + 1) : argv[++i]);
    if (key === "--portable-dir") opts.portableDir = path.resolve(val());
    else if (key === "--core-dir") opts.coreDir = path.resolve(val());
    else if (key === "--heapsize") opts.heapsize = parseSize(val());
    else if (key === "-h" || key === "--help") {
      process.stdout.write(
        "usage: node runner.mjs [--portable-dir DIR] [--core-dir DIR] [--heapsize N[k|m]]\n");
      process.exit(0);
    } else die(2, `unknown argument: ${a}`);
  }
  for (const [flag, dir] of [["--portable-dir", opts.portableDir], ["--core-dir", opts.coreDir]]) {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) die(2, `${flag}: not a directory: ${dir}`);
  }
  return opts;
}

// ---- MicroPython filesystem helpers -------------------------------------------

function mkdirp(FS, dir) {
  let cur = "";
  for (const part of dir.split("/").filter(Boolean)) {
    cur += "/" + part;
    try {
      FS.mkdir(cur);
    } catch (e) {
      // already exists
    }
  }
}

// Copy a host directory tree into the MicroPython FS (skipping caches/dotfiles).
function copyTree(FS, hostDir, mpDir) {
  mkdirp(FS, mpDir);
  for (const ent of fs.readdirSync(hostDir, { withFileTypes: true })) {
    if (ent.name.startsWith(".") || ent.name === "__pycache__" || ent.name.endsWith(".pyc")) continue;
    const src = path.join(hostDir, ent.name);
    const dst = mpDir + "/" + ent.name;
    if (ent.isDirectory()) copyTree(FS, src, dst);
    else if (ent.isFile()) FS.writeFile(dst, fs.readFileSync(src));
  }
}

// Dotted module names of every .py file under a package directory.
function packageModules(hostDir, pkgName) {
  const out = [];
  const walk = (dir, dotted) => {
    const ents = fs.readdirSync(dir, { withFileTypes: true })
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const ent of ents) {
      if (ent.name.startsWith(".") || ent.name === "__pycache__") continue;
      if (ent.isDirectory()) {
        if (fs.existsSync(path.join(dir, ent.name, "__init__.py"))) walk(path.join(dir, ent.name), dotted + "." + ent.name);
      } else if (ent.isFile() && ent.name.endsWith(".py")) {
        const stem = ent.name.slice(0, -3);
        out.push(stem === "__init__" ? dotted : dotted + "." + stem);
      }
    }
  };
  walk(hostDir, pkgName);
  return out;
}

// ---- Python side ---------------------------------------------------------------

const PY_SETUP = `
import sys, io, json, time

def _mpy_tb(e):
    s = io.StringIO()
    sys.print_exception(e, s)
    return s.getvalue()

def _mpy_import(name):
    # Import a module by dotted name; return (module, None) or (None, traceback).
    try:
        __import__(name)
        return sys.modules[name], None
    except BaseException as e:
        sys.modules.pop(name, None)
        return None, _mpy_tb(e)

def _mpy_core(name):
    mod, tb = _mpy_import(name)
    return json.dumps({"module": name, "ok": tb is None, "traceback": tb or ""})

_mpy_mods = {}

def _mpy_load(modname, dotted):
    # -> JSON {"tests": [...]} or {"error": traceback}
    mod, tb = _mpy_import(dotted)
    if tb is not None:
        return json.dumps({"error": tb})
    _mpy_mods[modname] = mod
    names = []
    for n in dir(mod):
        if n.startswith("test_"):
            try:
                if callable(getattr(mod, n)):
                    names.append(n)
            except BaseException:
                names.append(n)
    names.sort()
    return json.dumps({"tests": names})

def _mpy_run(modname, test):
    t0 = time.ticks_ms()
    tb = ""
    ok = True
    try:
        getattr(_mpy_mods[modname], test)()
    except BaseException as e:
        ok = False
        tb = _mpy_tb(e)
    ms = time.ticks_diff(time.ticks_ms(), t0)
    return json.dumps({"ok": ok, "traceback": tb, "ms": ms})

_mpy_info = json.dumps({
    "version": sys.version,
    "name": sys.implementation.name,
    "impl_version": list(sys.implementation.version),
    "machine": getattr(sys.implementation, "_machine", ""),
    "build": getattr(sys.implementation, "_build", ""),
})
`;

function pyStr(s) {
  return JSON.stringify(s); // a JSON string literal is a valid Python str literal for our names
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const prefix = path.resolve(process.env.MPY_PREFIX || path.join(REPO, ".mpy"));
  const mjs = path.join(prefix, "node_modules", PKG, "micropython.mjs");
  if (!fs.existsSync(mjs)) {
    die(3, `MicroPython package not found at ${mjs}\n` +
      `install it with: npm install --prefix ${prefix} ${PKG}@${PKG_VERSION}   (make test does this)`);
  }
  const started = Date.now();
  const { loadMicroPython } = await import(pathToFileURL(mjs).href);

  let outBytes = [];
  const sink = (b) => {
    if (outBytes.length < MAX_OUTPUT) for (const c of b) outBytes.push(c);
  };
  const mp = await loadMicroPython({ heapsize: opts.heapsize, stdout: sink, stderr: sink, linebuffer: false });
  const decoder = new TextDecoder();
  const takeOutput = () => {
    const s = decoder.decode(new Uint8Array(outBytes));
    outBytes = [];
    return s;
  };

  // Call a Python expression that returns a JSON string; never throws.
  const call = (expr) => {
    try {
      mp.runPython(`_mpy_out = ${expr}`);
      return JSON.parse(mp.globals.get("_mpy_out"));
    } catch (e) {
      return { jsError: String((e && (e.stack || e.message)) || e) };
    }
  };

  // Lay out the filesystem.
  const coreName = path.basename(opts.coreDir);
  const portName = path.basename(opts.portableDir);
  copyTree(mp.FS, opts.coreDir, `/lib/${coreName}`);
  copyTree(mp.FS, opts.portableDir, `/mpytest/${portName}`);
  const asPackage = fs.existsSync(path.join(opts.portableDir, "__init__.py"));

  mp.runPython(PY_SETUP);
  mp.runPython(
    `sys.path.insert(0, "/lib")\n` +
    `sys.path.insert(0, ${pyStr(`/mpytest/${portName}`)})\n` +
    `sys.path.insert(0, "/mpytest")\n`);
  const infoRaw = JSON.parse(mp.globals.get("_mpy_info"));
  takeOutput();

  const report = {
    micropython: infoRaw.version,
    implementation: {
      name: infoRaw.name, version: infoRaw.impl_version, machine: infoRaw.machine, build: infoRaw.build,
    },
    heapsize: opts.heapsize,
    core_dir: opts.coreDir,
    portable_dir: opts.portableDir,
    core_modules: [],
    results: [],
    import_errors: [],
    seconds: 0,
  };

  // 1. Every core module must import under MicroPython.
  for (const name of packageModules(opts.coreDir, coreName)) {
    const r = call(`_mpy_core(${pyStr(name)})`);
    const out = takeOutput();
    if (r.jsError) report.core_modules.push({ module: name, ok: false, traceback: r.jsError, output: out });
    else report.core_modules.push({ ...r, output: out });
  }

  // 2. The portable tests.
  const files = fs.readdirSync(opts.portableDir)
    .filter((f) => /^test_.*\.py$/.test(f))
    .sort();
  for (const f of files) {
    const modname = f.slice(0, -3);
    const dotted = asPackage ? `${portName}.${modname}` : modname;
    process.stderr.write(`mpy runner: import ${dotted}\n`);
    const loaded = call(`_mpy_load(${pyStr(modname)}, ${pyStr(dotted)})`);
    const loadOut = takeOutput();
    if (loaded.jsError || loaded.error) {
      report.import_errors.push({ module: modname, traceback: loaded.jsError || loaded.error, output: loadOut });
      continue;
    }
    for (const test of loaded.tests) {
      process.stderr.write(`mpy runner: run ${modname}::${test}\n`);
      const r = call(`_mpy_run(${pyStr(modname)}, ${pyStr(test)})`);
      const out = takeOutput();
      if (r.jsError) {
        report.results.push({ module: modname, test, ok: false, traceback: "JavaScript error: " + r.jsError, output: out, ms: null });
      } else {
        report.results.push({ module: modname, test, ok: r.ok, traceback: r.traceback, output: out, ms: r.ms });
      }
    }
  }

  report.seconds = (Date.now() - started) / 1000;
  const passed = report.results.filter((r) => r.ok).length;
  process.stderr.write(
    `mpy runner: ${passed} passed, ${report.results.length - passed} failed, ` +
    `${report.import_errors.length} import errors in ${report.seconds.toFixed(2)} s\n`);
  process.stdout.write(JSON.stringify(report) + "\n");
}

main().catch((e) => die(1, `internal error: ${(e && e.stack) || e}`));
