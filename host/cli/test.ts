/**
 * `portcullis test [PATHS...]`: runs rule test files (*.test.ts / *.test.js) with Node's
 * own test runner. TypeScript is compiled with esbuild first; `portcullis/sdk` and
 * `portcullis/sdk/testing` resolve to this installation, wherever the tests live.
 * Without PATHS it runs the tests in the config's rules directories (and --rules).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build, type Plugin } from 'esbuild';
import { loadConfig } from '../config/config.js';
import { ROOT } from '../paths.js';
import { ruleDirs } from '../pipeline/ruleset.js';

const TEST_FILE = /\.test\.[mc]?[tj]s$/;

function findTests(path: string): string[] {
  const st = statSync(path);
  if (st.isFile()) return [resolve(path)];
  return readdirSync(path, { withFileTypes: true }).flatMap((e) => {
    if (e.name === 'node_modules' || e.name.startsWith('.')) return [];
    const p = join(path, e.name);
    return e.isDirectory() ? findTests(p) : TEST_FILE.test(e.name) ? [resolve(p)] : [];
  });
}

/** Our SDK, from this installation's build. */
const sdk: Plugin = {
  name: 'portcullis-sdk',
  setup(b) {
    b.onResolve({ filter: /^portcullis\/sdk(\/testing)?$/ }, (a) => ({ path: a.path.endsWith('/testing') ? join(ROOT, 'dist', 'host', 'testing', 'harness.js') : join(ROOT, 'dist', 'sdk', 'index.js'), external: true }));
  },
};

export async function runTests(argv: string[], err = process.stderr): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { config: { type: 'string' }, rules: { type: 'string' } }, allowPositionals: true, strict: true });
  const roots = positionals.length ? positionals : ruleDirs(loadConfig(values.config, { rulesDir: values.rules })).filter((d) => d !== join(ROOT, 'rules'));
  const files = roots.flatMap((p) => findTests(p));
  if (!files.length) {
    err.write(`portcullis test: no test files (*.test.ts, *.test.js) in ${roots.join(', ') || '(no rules directories)'}\n`);
    return 1;
  }
  const out = mkdtempSync(join(tmpdir(), 'portcullis-tests-'));
  try {
    const compiled: string[] = [];
    for (const [i, f] of files.entries()) {
      const outfile = join(out, `${i}-${basename(f).replace(/\.[mc]?[tj]s$/, '.mjs')}`);
      await build({ entryPoints: [f], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', plugins: [sdk], logLevel: 'error' });
      compiled.push(outfile);
    }
    return await new Promise<number>((ok) => {
      // Run as a test run of its own, even when this command runs inside another one.
      const env = { ...process.env };
      delete env.NODE_TEST_CONTEXT;
      const child = spawn(process.execPath, ['--test', ...compiled], { stdio: 'inherit', env });
      child.on('close', (code) => ok(code ?? 1));
    });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
