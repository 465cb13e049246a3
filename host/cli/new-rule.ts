/**
 * `portcullis new-rule NAME [--dir DIR]`: writes DIR/NAME.ts (a working rule to edit),
 * DIR/NAME.test.ts (its test, for `portcullis test` or your own runner) and, if DIR has
 * none, DIR/tsconfig.json (the compiler settings `portcullis check` uses, for editors and
 * `tsc --noEmit -p DIR`).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RULE_NAME_PATTERN } from '../../sdk/index.js';
import { RULE_COMPILER_OPTIONS } from '../typecheck.js';

const ruleTemplate = (name: string): string => `/**
 * ${name} — refuses mail to the recipients listed in its options.
 *
 * Edit it to do what you need: see the README's "Writing a rule" for the phases, their
 * events and what each verdict sends to the client.
 */
import { defineRule, next, reject, STATUS } from 'portcullis/sdk';

export default defineRule({
  name: '${name}',
  description: 'Refuses mail to the listed recipients',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      blocked: { type: 'array', items: { type: 'string' }, default: ['blockme@localhost'], description: 'Addresses to refuse.' },
    },
  },
  phases: {
    rcpt: (ev, ctx) => {
      if (!ctx.options.blocked.includes(ev.rcpt.address.toLowerCase())) return next();
      ctx.log(\`refusing \${ev.rcpt.address}\`);
      return reject(550, 'Mailbox unavailable', { status: STATUS.badMailbox, reason: '${name}' });
    },
  },
});
`;

const testTemplate = (name: string): string => `import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadRule, type Harness } from 'portcullis/sdk/testing';

describe('${name}', () => {
  let h: Harness;
  before(async () => {
    // The rule beside this test, wherever the tests run from.
    h = await loadRule(new URL('./${name}.ts', import.meta.url));
  });
  after(() => h.close());

  it('refuses a blocked recipient', async () => {
    const s = await h.connect({ ip: '203.0.113.9', helo: 'mx.example.net' });
    await s.mail('someone@example.net');
    assert.equal((await s.rcpt('blockme@localhost')).reply, '550 5.1.1 Mailbox unavailable');
  });

  it('accepts other recipients', async () => {
    const s = await h.connect({ ip: '203.0.113.9', helo: 'mx.example.net' });
    await s.mail('someone@example.net');
    assert.equal((await s.rcpt('user@localhost')).reply, null);
  });
});
`;

const tsconfigTemplate = (): string => `// Written by portcullis new-rule: the settings \`portcullis check\` type-checks rules with,
// for your editor and \`npx tsc -p <this directory>\`. The tests also need @types/node.
${JSON.stringify({ compilerOptions: { ...RULE_COMPILER_OPTIONS, lib: ['es2022'] } }, null, 2)}
`;

export function newRule(argv: string[], out = process.stdout, err = process.stderr): number {
  const { values, positionals } = parseArgs({ args: argv, options: { dir: { type: 'string', default: '.' } }, allowPositionals: true, strict: true });
  const name = positionals[0];
  if (!name || positionals.length > 1 || !new RegExp(RULE_NAME_PATTERN).test(name)) {
    err.write('portcullis new-rule: give one NAME in kebab-case (a-z, 0-9, -), e.g. portcullis new-rule no-blockme --dir myrules\n');
    return 64;
  }
  const dir = values.dir!;
  const rule = join(dir, `${name}.ts`);
  const test = join(dir, `${name}.test.ts`);
  for (const f of [rule, test]) {
    if (existsSync(f)) {
      err.write(`portcullis new-rule: ${f} exists; not overwriting it\n`);
      return 73; // EX_CANTCREAT
    }
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(rule, ruleTemplate(name));
  writeFileSync(test, testTemplate(name));
  const tsconfig = join(dir, 'tsconfig.json');
  const written = existsSync(tsconfig) ? '' : `created ${tsconfig}\n`;
  if (written) writeFileSync(tsconfig, tsconfigTemplate());
  out.write(`created ${rule}\ncreated ${test}\n${written}next: portcullis test ${test} · portcullis check --rules ${dir} · portcullis start --rules ${dir}\n`);
  return 0;
}
