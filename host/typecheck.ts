/**
 * Type-checks rule files against the SDK's types. Loading a rule only strips its types
 * (esbuild, for speed), so a rule that reads a field the event does not have would load
 * and fail at run time (451); this is the check that catches it first, for
 * `portcullis check` (an error) and after a hot reload (a warning).
 *
 * TypeScript 7 is a native binary with no stable JS API (only `typescript/unstable/*`), so
 * it runs as a child process on a generated tsconfig, and its plain-text diagnostics
 * (`file(line,col): error TS2339: text`, continuation lines indented) are parsed back.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Config } from './config/config.js';
import { BUILTIN_RULES, SDK_TYPES } from './paths.js';
import { ruleDirs, ruleFiles } from './pipeline/ruleset.js';

/** One diagnostic: where (absent for a problem of the whole program) and what. */
export interface TypeProblem {
  file?: string;
  line?: number;
  col?: number;
  /** `TS2339` (absent when the compiler itself failed) */
  code?: string;
  message: string;
}

/**
 * Compiler options a rule is checked with: strict, and the world of the sandbox (the
 * language, no Node types, no DOM). Imports resolve as esbuild resolves them when the
 * rule is loaded (bundler style: `./lib/x.js` or `./lib/x.ts`).
 */
export const RULE_COMPILER_OPTIONS = {
  strict: true,
  noEmit: true,
  target: 'es2022',
  module: 'preserve',
  moduleResolution: 'bundler',
  allowImportingTsExtensions: true,
  // A rule may be JavaScript: part of the program (its imports resolve), not type-checked.
  allowJs: true,
  skipLibCheck: true,
} as const;

/** The admin's rule files (the built-in ones are checked when Portcullis is built); an unreadable directory is the loader's to report. */
export function adminRuleFiles(cfg: Config): string[] {
  return ruleDirs(cfg).filter((d) => d !== BUILTIN_RULES).flatMap((d) => {
    try {
      return ruleFiles(d);
    } catch {
      return [];
    }
  });
}

const tscBin = (): string => join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');

/** Type-checks `files` (absolute paths); resolves with every problem found, none when clean. */
export async function typeCheckRules(files: string[]): Promise<TypeProblem[]> {
  if (!files.length) return [];
  let tsc: string;
  try {
    tsc = tscBin();
  } catch (e) {
    return [{ message: `the type check could not run: ${(e as Error).message}` }];
  }
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-typecheck-'));
  try {
    const tsconfig = join(dir, 'tsconfig.json');
    const compilerOptions = { ...RULE_COMPILER_OPTIONS, lib: ['es2022'], types: [], paths: { 'portcullis/sdk': [SDK_TYPES] } };
    writeFileSync(tsconfig, JSON.stringify({ compilerOptions, files }));
    const { code, output } = await new Promise<{ code: number; output: string }>((ok) => {
      execFile(process.execPath, [tsc, '-p', tsconfig, '--pretty', 'false'], { cwd: dir, maxBuffer: 16 << 20 }, (e, stdout, stderr) => {
        ok({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, output: stdout + stderr });
      });
    });
    const problems = parseDiagnostics(output, dir);
    // A compiler that failed without a diagnostic (not installed, crashed) must not pass for a clean check.
    if (code !== 0 && !problems.length) problems.push({ message: `the type check could not run (exit ${code}): ${output.trim()}` });
    return problems;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const LOCATED = /^(.+)\((\d+),(\d+)\): error (TS\d+): (.*)$/;
const GLOBAL = /^error (TS\d+): (.*)$/;

/** tsc's `--pretty false` output; file paths are relative to `cwd`. */
export function parseDiagnostics(output: string, cwd: string): TypeProblem[] {
  const out: TypeProblem[] = [];
  for (const line of output.split(/\r?\n/)) {
    const m = LOCATED.exec(line);
    const g = m ? null : GLOBAL.exec(line);
    if (m) out.push({ file: resolve(cwd, m[1]!), line: Number(m[2]), col: Number(m[3]), code: m[4]!, message: m[5]! });
    else if (g) out.push({ code: g[1]!, message: g[2]! });
    else if (/^\s+\S/.test(line) && out.length) out[out.length - 1]!.message += `\n  ${line.trim()}`; // a message chain's next link
  }
  return out;
}

/** `file:line:col: TS2339: text`, the form every other problem of a rule takes. */
export function formatTypeProblem(p: TypeProblem): string {
  return `${p.file ? `${p.file}:${p.line}:${p.col}: ` : ''}${p.code ? `${p.code}: ` : ''}${p.message}`;
}
