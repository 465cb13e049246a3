/**
 * `portcullis test [--config FILE] [--rules DIR] [PATHS...] [--test-* FLAGS] [-- NODE FLAGS]`:
 * runs rule test files (*.test.ts / *.test.js) in place with Node's own test runner.
 * TypeScript is stripped as each file loads (test-hooks.ts), with source maps, so
 * `import.meta.url` is the test's own, paths are relative to it, and a failure names the
 * .ts line. Node's runner flags (`--test-name-pattern`, `--test-reporter`, …) and
 * anything after `--` go to Node. Without PATHS it runs the tests in the config's rules
 * directories (and --rules).
 */
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/config.js';
import { BUILTIN_RULES } from '../paths.js';
import { ruleDirs } from '../pipeline/ruleset.js';

const TEST_FILE = /\.test\.(m?ts|[mc]?js)$/;
/** Node's test runner flags that take no value; every other `--test-*` flag does. */
const NODE_TEST_SWITCHES = new Set(['--test-only', '--test-force-exit', '--test-update-snapshots', '--experimental-test-coverage']);

function findTests(path: string): string[] {
  const st = statSync(path);
  if (st.isFile()) return [resolve(path)];
  return readdirSync(path, { withFileTypes: true }).flatMap((e) => {
    if (e.name === 'node_modules' || e.name.startsWith('.')) return [];
    const p = join(path, e.name);
    return e.isDirectory() ? findTests(p) : TEST_FILE.test(e.name) ? [resolve(p)] : [];
  });
}

/** Splits our arguments from Node's: `--test-*` flags (with their values) and all after `--`. */
export function splitArgs(argv: string[]): { ours: string[]; node: string[] } {
  const ours: string[] = [];
  const node: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      node.push(...argv.slice(i + 1));
      break;
    }
    if (/^--(experimental-)?test-/.test(a)) {
      node.push(a);
      if (!a.includes('=') && !NODE_TEST_SWITCHES.has(a) && i + 1 < argv.length) node.push(argv[++i]!);
    } else ours.push(a);
  }
  return { ours, node };
}

export async function runTests(argv: string[], err = process.stderr): Promise<number> {
  const { ours, node } = splitArgs(argv);
  const { values, positionals } = parseArgs({ args: ours, options: { config: { type: 'string' }, rules: { type: 'string' } }, allowPositionals: true, strict: true });
  const roots = positionals.length ? positionals : ruleDirs(loadConfig(values.config, { rulesDir: values.rules })).filter((d) => d !== BUILTIN_RULES);
  const files = roots.flatMap((p) => findTests(p));
  if (!files.length) {
    err.write(`portcullis test: no test files (*.test.ts, *.test.js) in ${roots.join(', ') || '(no rules directories)'}\n`);
    return 1;
  }
  const hooks = new URL('./test-register.js', import.meta.url).href;
  // Run as a test run of its own, even when this command runs inside another one.
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  // Node's runner starts one process per file with these flags (--import, source maps) too.
  const args = ['--enable-source-maps', '--import', hooks, '--test', ...node, ...files];
  return new Promise<number>((ok) => {
    const child = spawn(process.execPath, args, { stdio: 'inherit', env });
    child.on('close', (code) => ok(code ?? 1));
  });
}
