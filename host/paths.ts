/** Where the checkout's parts are, whether running from source or from dist/. */
import { existsSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the Portcullis package root');
    dir = up;
  }
  return dir;
}

export const ROOT = findRoot();
/** The SDK's sources: what `portcullis/sdk` resolves to when a rule is compiled. */
export const SDK_DIR = join(ROOT, 'sdk') + sep;
export const SDK_ENTRY = join(ROOT, 'sdk', 'index.ts');
/** The SDK's emitted declarations: what rules are type-checked against (package.json "exports" types). */
export const SDK_TYPES = join(ROOT, 'dist', 'sdk', 'index.d.ts');
export const BUILTIN_RULES = join(ROOT, 'rules');
export const CONFIG_SCHEMA = join(ROOT, 'schemas', 'config.schema.json');
