/**
 * Compiles a rule file (TypeScript or JavaScript) into one self-contained script for the
 * sandbox. esbuild strips types and bundles the SDK into it; any other import is an
 * error, because nothing of Node exists inside the sandbox.
 */
import { resolve } from 'node:path';
import { build, type Message, type Plugin } from 'esbuild';
import { SDK_DIR, SDK_ENTRY } from '../paths.js';
import { BUNDLE_DIR, BUNDLE_GLOBAL } from './guest.js';

/** A rule that did not compile; `message` lists each problem as file:line:col: text. */
export class CompileError extends Error {}

/** Only the SDK (and the rule's own relative files) may be imported. */
const onlySdk: Plugin = {
  name: 'portcullis-imports',
  setup(b) {
    b.onResolve({ filter: /^portcullis\/sdk$/ }, () => ({ path: SDK_ENTRY }));
    b.onResolve({ filter: /^[^./]/ }, (args) => ({
      errors: [{ text: `cannot import "${args.path}": a rule may import only "portcullis/sdk" and its own relative files (no Node modules, no packages)` }],
    }));
  },
};

function format(m: Message): string {
  const l = m.location;
  return l ? `${resolve(l.file)}:${l.line}:${l.column + 1}: ${m.text}` : m.text;
}

/** The bundle of a rule, and its source map (JSON) back to the rule's own files. */
export interface CompiledRule {
  code: string;
  map: string;
  /** The files bundled in (the rule and the helpers it imports, absolute), not the SDK: a change to any of them changes the rule. */
  inputs: string[];
}

export async function compileRule(file: string): Promise<CompiledRule> {
  try {
    const out = await build({
      entryPoints: [file],
      bundle: true,
      write: false,
      format: 'iife',
      globalName: BUNDLE_GLOBAL,
      platform: 'neutral',
      target: 'es2020',
      logLevel: 'silent',
      plugins: [onlySdk],
      // A separate map, used to point runtime errors at the rule's own file:line:col.
      sourcemap: 'external',
      outdir: BUNDLE_DIR,
      charset: 'utf8',
      metafile: true,
      absWorkingDir: process.cwd(),
    });
    const code = out.outputFiles.find((f) => f.path.endsWith('.js'))!.text;
    const map = out.outputFiles.find((f) => f.path.endsWith('.map'))?.text ?? '';
    const inputs = Object.keys(out.metafile.inputs).map((f) => resolve(f)).filter((f) => !f.startsWith(SDK_DIR));
    return { code, map, inputs };
  } catch (e) {
    const errors = (e as { errors?: Message[] }).errors;
    if (errors?.length) throw new CompileError(errors.map(format).join('\n'));
    throw new CompileError(`${file}: ${(e as Error).message}`);
  }
}
