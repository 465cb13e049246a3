/** The layering check (scripts/layers.mjs) on small made-up `tsc --explainFiles` outputs. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ROOT } from '../host/paths.js';

interface Edge { from: string; to: string; spec: string }
/** What this test uses of scripts/layers.mjs (plain JavaScript, outside the compiled tree). */
interface Layers {
  parseExplainFiles(text: string): Edge[];
  folderOf(file: string): string | null;
  check(edges: Edge[], allowed?: string[]): { violations: string[]; unneededAllowed: string[] };
}
const layers = (await import(pathToFileURL(join(ROOT, 'scripts', 'layers.mjs')).href)) as Layers;

/** A tsc --explainFiles output where each `[from, to, spec?]` is one import. */
function explain(imports: [string, string, string?][]): string {
  const byTarget = new Map<string, string[]>();
  for (const [from, to, spec] of imports) {
    const why = `   Imported via '${spec ?? './x.js'}' from file '${from}'${spec?.startsWith('portcullis/') ? ` with packageId '${spec}/index.ts@0.1.0'` : ''}`;
    byTarget.set(to, [...(byTarget.get(to) ?? []), why]);
  }
  return [...byTarget].map(([to, why]) => `${to}\n${why.join('\n')}\n   Matched by include pattern '**/*' in 'tsconfig.json'`).join('\n') + '\n';
}
const run = (imports: [string, string, string?][], allowed: string[] = []) => layers.check(layers.parseExplainFiles(explain(imports)), allowed).violations;

describe('reading tsc --explainFiles', () => {
  it('turns each "Imported via" line into an edge from the importer to the file above it', () => {
    const text = [
      '../main/node_modules/@types/node/index.d.ts',
      "   Entry point for implicit type library 'node'",
      'sdk/index.ts',
      "   Imported via 'portcullis/sdk' from file 'rules/a.ts' with packageId 'portcullis/sdk/index.ts@0.1.0'",
      '   Imported via "../sdk/index.js" from file "host/smtp/session.ts"',
      "   Matched by include pattern 'sdk' in 'tsconfig.json'",
      'host/paths.ts',
      "   Referenced via './paths.ts' from file 'host/cli/main.ts'",
    ].join('\n');
    assert.deepEqual(layers.parseExplainFiles(text), [
      { from: 'rules/a.ts', to: 'sdk/index.ts', spec: 'portcullis/sdk' },
      { from: 'host/smtp/session.ts', to: 'sdk/index.ts', spec: '../sdk/index.js' },
      { from: 'host/cli/main.ts', to: 'host/paths.ts', spec: './paths.ts' },
    ]);
  });

  it('puts each file in its folder: top-level folders, host/ by subfolder, packages in none', () => {
    const table: [string, string | null][] = [
      ['sdk/testing.ts', 'sdk'], ['rules/lib/dnsbl.ts', 'rules'], ['test/pool.test.ts', 'test'],
      ['host/smtp/session.ts', 'host/smtp'], ['host/host.ts', 'host/host.ts'], ['host/types/mailsplit.d.ts', 'host/types'],
      ['node_modules/ajv/dist/ajv.d.ts', null], ['../main/node_modules/pino/pino.d.ts', null], ['/usr/lib/x.d.ts', null],
    ];
    for (const [file, folder] of table) assert.equal(layers.folderOf(file), folder, file);
  });
});

describe('which folder may import which', () => {
  it('lets sdk/ import only sdk/ and packages', () => {
    assert.deepEqual(run([
      ['sdk/index.ts', 'sdk/rule.ts'],
      ['sdk/testing.ts', 'node_modules/pino/pino.d.ts', 'pino'],
      ['sdk/testing.ts', 'host/config/config.ts'],
    ]), ['sdk/testing.ts imports host/config/config.ts: sdk/ may import only sdk/']);
  });

  it("lets rules/ import rules/ and the SDK as 'portcullis/sdk', nothing else", () => {
    assert.deepEqual(run([
      ['rules/dnsbl.ts', 'sdk/index.ts', 'portcullis/sdk'],
      ['rules/dnsbl.ts', 'rules/lib/dnsbl.ts'],
      ['rules/blacklist.ts', 'host/net.ts'],
      ['rules/blacklist.ts', 'test/helpers.ts'],
    ]), [
      "rules/blacklist.ts imports host/net.ts: rules/ may import only rules/ and sdk/ (as 'portcullis/sdk')",
      "rules/blacklist.ts imports test/helpers.ts: rules/ may import only rules/ and sdk/ (as 'portcullis/sdk')",
    ]);
  });

  it('lets examples/ reach host/ only through the public harness', () => {
    assert.deepEqual(run([
      ['examples/a.test.ts', 'sdk/testing.ts', 'portcullis/sdk/testing'],
      ['sdk/testing.ts', 'host/smtp/session.ts'],
      ['examples/b.test.ts', 'host/smtp/session.ts'],
    ], ['sdk/testing.ts -> host/smtp/session.ts']), [
      "examples/b.test.ts imports host/smtp/session.ts: examples/ may reach host/ only through the public harness ('portcullis/sdk/testing')",
    ]);
  });

  it('refuses each declared one-way pair in the wrong direction and nothing else in host/', () => {
    assert.deepEqual(run([
      ['host/smtp/session.ts', 'host/pipeline/pipeline.ts'],
      ['host/pipeline/pipeline.ts', 'host/sandbox/sandbox.ts'],
      ['host/sandbox/pool.ts', 'host/store/access.ts'],
      ['host/delivery/relay.ts', 'host/smtp/reply.ts'],
      ['host/sandbox/chain.ts', 'host/pipeline/ruleset.ts'],
    ]), [
      'host/delivery/relay.ts imports host/smtp/reply.ts: host/delivery must not import host/smtp',
      'host/sandbox/chain.ts imports host/pipeline/ruleset.ts: host/sandbox must not import host/pipeline',
      'cycle between folders host/pipeline -> host/sandbox -> host/pipeline: host/pipeline/pipeline.ts imports host/sandbox/sandbox.ts; host/sandbox/chain.ts imports host/pipeline/ruleset.ts',
    ]);
  });

  it('reports an edge once however many times tsc lists it (import and import type)', () => {
    assert.deepEqual(run([['sdk/testing.ts', 'host/dns/backend.ts'], ['sdk/testing.ts', 'host/dns/backend.ts']]),
      ['sdk/testing.ts imports host/dns/backend.ts: sdk/ may import only sdk/']);
  });
});

describe('cycles between folders', () => {
  it('finds none in a one-way graph, whatever happens inside a folder', () => {
    assert.deepEqual(run([
      ['host/host.ts', 'host/cli/x.ts'],
      ['host/cli/x.ts', 'host/config/config.ts'],
      ['host/config/config.ts', 'host/config/defaults.ts'],
      ['host/config/defaults.ts', 'host/config/config.ts'],
      ['test/a.test.ts', 'host/host.ts'],
    ]), []);
  });

  it('reports every strongly connected component once, as a walk through all its folders with one example edge per step', () => {
    assert.deepEqual(run([
      // one component of three folders: store -> dns -> store, dns -> config -> store
      ['host/store/a.ts', 'host/dns/a.ts'],
      ['host/dns/b.ts', 'host/store/b.ts'],
      ['host/dns/a.ts', 'host/config/a.ts'],
      ['host/config/a.ts', 'host/store/c.ts'],
      ['host/dns/c.ts', 'host/store/a.ts'],
      // another of two: test <-> bench
      ['test/t.ts', 'bench/b.ts'],
      ['bench/b.ts', 'test/u.ts'],
      // and a one-way edge between them
      ['test/t.ts', 'host/store/a.ts'],
    ]), [
      'cycle between folders bench -> test -> bench: bench/b.ts imports test/u.ts; test/t.ts imports bench/b.ts',
      'cycle between folders host/config -> host/store -> host/dns -> host/config: host/config/a.ts imports host/store/c.ts; host/store/a.ts imports host/dns/a.ts; host/dns/a.ts imports host/config/a.ts',
    ]);
  });

  it('counts each file directly in host/ as a node of its own: the root importing a folder that imports a leaf is no cycle', () => {
    assert.deepEqual(run([['host/host.ts', 'host/store/store.ts'], ['host/store/sqlite.ts', 'host/metrics.ts']]), []);
    assert.deepEqual(run([['host/metrics.ts', 'host/store/store.ts'], ['host/store/sqlite.ts', 'host/metrics.ts']]), [
      'cycle between folders host/metrics.ts -> host/store -> host/metrics.ts: host/metrics.ts imports host/store/store.ts; host/store/sqlite.ts imports host/metrics.ts',
    ]);
  });
});

describe('the allow-list', () => {
  const imports: [string, string][] = [
    ['host/smtp/server.ts', 'host/delivery/delivery.ts'],
    ['host/delivery/relay.ts', 'host/smtp/reply.ts'],
    ['host/delivery/bounce.ts', 'host/smtp/message.ts'],
  ];

  it('leaves allowed edges out of both the folder rules and the cycles', () => {
    assert.deepEqual(run(imports, ['host/delivery/relay.ts -> host/smtp/reply.ts', 'host/delivery/bounce.ts -> host/smtp/message.ts']), []);
  });

  it('still fails on an edge of the same kind that is not listed', () => {
    assert.deepEqual(run(imports, ['host/delivery/relay.ts -> host/smtp/reply.ts']), [
      'host/delivery/bounce.ts imports host/smtp/message.ts: host/delivery must not import host/smtp',
      'cycle between folders host/delivery -> host/smtp -> host/delivery: host/delivery/bounce.ts imports host/smtp/message.ts; host/smtp/server.ts imports host/delivery/delivery.ts',
    ]);
  });

  it('names the entries the check no longer needs: gone edges, and edges that no longer close a cycle', () => {
    const allowed = ['host/delivery/relay.ts -> host/smtp/reply.ts', 'host/delivery/bounce.ts -> host/smtp/message.ts', 'host/smtp/server.ts -> host/delivery/delivery.ts', 'sdk/gone.ts -> host/x.ts'];
    // relay and bounce break the folder rule on their own; with them listed, server -> delivery closes no cycle
    assert.deepEqual(layers.check(layers.parseExplainFiles(explain(imports)), allowed).unneededAllowed,
      ['host/smtp/server.ts -> host/delivery/delivery.ts', 'sdk/gone.ts -> host/x.ts']);
  });
});
