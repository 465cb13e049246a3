/**
 * Module hooks for `portcullis test` (registered by test-register.ts in the test
 * processes): tests run where they are, so `import.meta.url` and relative paths are the
 * test file's own. TypeScript is stripped by esbuild with an inline source map (a failure
 * points at the .ts line under --enable-source-maps); `portcullis/sdk` and
 * `portcullis/sdk/testing` resolve to this installation wherever the tests live.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

interface ResolveResult { url: string; format?: string | null; shortCircuit?: boolean }
interface LoadResult { format: string; source?: string | ArrayBuffer | Uint8Array; shortCircuit?: boolean }
type NextResolve = (specifier: string, context?: object) => Promise<ResolveResult>;
type NextLoad = (url: string, context?: object) => Promise<LoadResult>;

const OURS: Record<string, string> = {
  'portcullis/sdk': new URL('../../sdk/index.js', import.meta.url).href,
  'portcullis/sdk/testing': new URL('../testing/harness.js', import.meta.url).href,
};
const TYPESCRIPT = /\.m?ts$/;

export async function resolve(specifier: string, context: object, next: NextResolve): Promise<ResolveResult> {
  const ours = OURS[specifier];
  if (ours) return { url: ours, shortCircuit: true };
  try {
    return await next(specifier, context);
  } catch (e) {
    // `./helper.js` naming `./helper.ts`: TypeScript's own convention for ES modules.
    if ((e as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND' || !/^\.\.?\/.*\.m?js$/.test(specifier)) throw e;
    return next(specifier.replace(/js$/, 'ts'), context);
  }
}

export async function load(url: string, context: object, next: NextLoad): Promise<LoadResult> {
  if (!url.startsWith('file:') || !TYPESCRIPT.test(new URL(url).pathname)) return next(url, context);
  const file = fileURLToPath(url);
  const { code } = await transform(await readFile(file, 'utf8'), { loader: 'ts', format: 'esm', target: 'node20', sourcemap: 'inline', sourcefile: file });
  return { format: 'module', source: code, shortCircuit: true };
}
