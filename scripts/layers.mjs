#!/usr/bin/env node
// The layering check (`npm run lint:layers`, part of `npm test`): which folder may import
// which, and no import cycles between folders. It reads the compiler's own import graph
// (`tsc --explainFiles`: every import, type-only ones included, already resolved: the
// rules' 'portcullis/sdk' comes out as sdk/index.ts through package.json "exports"), so it
// needs no parser of its own and no TypeScript JS API (TypeScript 7 has none).
//
//   node scripts/layers.mjs                   run tsc on the checkout and check it
//   node scripts/layers.mjs --explain FILE    check a saved `tsc --explainFiles` output
//
// Exit 0: clean. Exit 1: one line per violation on stdout. Exit 2: the check could not run.
// Allow-list entries no longer needed are named on stderr (remove them); they do not fail it.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Known violations, tolerated until the parallel fixes land: `from -> to`, file paths as tsc
 * prints them. An allowed edge is left out of the graph entirely (rules and cycles).
 * Empty this list, don't grow it.
 */
export const ALLOWED = [];

/** Folder pairs the design wants one-way: the first must never import the second. */
export const ONE_WAY = [
  ['host/delivery', 'host/smtp'],
  ['host/pipeline', 'host/smtp'],
  ['host/sandbox', 'host/pipeline'],
  ['host/sandbox', 'host/smtp'],
];

/**
 * The import edges in `tsc --explainFiles` output: a file's path on a line of its own, then
 * an indented line per reason it is in the program; `Imported via 'spec' from file 'f'`
 * (import, import type, export from, import()) and `Referenced via 'p' from file 'f'`
 * (/// <reference path>) are the edges f -> file.
 * @param {string} text
 * @returns {{ from: string, to: string, spec: string }[]}
 */
export function parseExplainFiles(text) {
  const edges = [];
  let file = null;
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') continue;
    if (!/^\s/.test(line)) { file = line.trim(); continue; }
    const m = /^\s+(?:Imported|Referenced) via (['"])(.*?)\1 from file (['"])(.*?)\3/.exec(line);
    if (m && file !== null) edges.push({ from: norm(m[4]), to: norm(file), spec: m[2] });
  }
  return edges;
}

const norm = (p) => p.replace(/\\/g, '/').replace(/^\.\//, '');

/**
 * The folder a project file belongs to: its top-level folder (`sdk`, `rules`, `test`…), or
 * for host/ its direct subfolder (`host/smtp`). A file directly in host/ is a node of its
 * own (`host/metrics.ts`): the composition root (host.ts, reload.ts) and the small leaves
 * everything uses (metrics, paths, net) are not one folder, and lumping them together
 * would make a cycle of every import.
 * Null for what is not ours: packages (node_modules) and anything outside the checkout.
 * @param {string} file
 */
export function folderOf(file) {
  if (file.startsWith('../') || file.startsWith('/') || /^[A-Za-z]:/.test(file) || /(^|\/)node_modules\//.test(file)) return null;
  const parts = file.split('/');
  if (parts.length === 1) return '.';
  if (parts[0] === 'host') return parts.length > 2 ? `host/${parts[1]}` : file;
  return parts[0];
}

/** The public rule harness (`portcullis/sdk/testing`): the one host file examples may import. */
const HARNESS = 'host/testing/harness.ts';

const under = (folder, top) => folder === top || folder.startsWith(`${top}/`);

/**
 * What each folder may import, file by file. Returns the message for a forbidden edge, or null.
 * @param {string} from
 * @param {string} to
 */
export function ruleFor(from, to) {
  const a = folderOf(from);
  const b = folderOf(to);
  if (a === null || b === null || a === b) return null;
  if (a === 'sdk') return 'sdk/ may import only sdk/';
  if (a === 'rules' && b !== 'sdk') return "rules/ may import only rules/ and sdk/ (as 'portcullis/sdk')";
  if (a === 'examples' && under(b, 'host') && to !== HARNESS) return "examples/ may reach host/ only through the public harness ('portcullis/sdk/testing')";
  for (const [x, y] of ONE_WAY) if (a === x && b === y) return `${x} must not import ${y}`;
  return null;
}

/**
 * The folder graph: for each folder edge a -> b, the file edges behind it (sorted).
 * @param {{ from: string, to: string }[]} edges
 * @returns {Map<string, Map<string, { from: string, to: string }[]>>}
 */
export function folderGraph(edges) {
  const graph = new Map();
  for (const e of edges) {
    const a = folderOf(e.from);
    const b = folderOf(e.to);
    if (a === null || b === null || a === b) continue;
    if (!graph.has(a)) graph.set(a, new Map());
    if (!graph.has(b)) graph.set(b, new Map());
    const out = graph.get(a);
    if (!out.has(b)) out.set(b, []);
    out.get(b).push(e);
  }
  for (const out of graph.values()) for (const list of out.values()) list.sort((x, y) => cmp(`${x.from} ${x.to}`, `${y.from} ${y.to}`));
  return graph;
}

const cmp = (x, y) => (x < y ? -1 : x > y ? 1 : 0);

/**
 * Strongly connected components with more than one node (Tarjan), each as a sorted list.
 * @param {Map<string, Map<string, unknown>>} graph
 * @returns {string[][]}
 */
export function cyclicComponents(graph) {
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const out = [];
  let next = 0;
  const visit = (v) => {
    index.set(v, next); low.set(v, next); next++;
    stack.push(v); onStack.add(v);
    for (const w of [...graph.get(v).keys()].sort(cmp)) {
      if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) === index.get(v)) {
      const scc = [];
      let w;
      do { w = stack.pop(); onStack.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1) out.push(scc.sort(cmp));
    }
  };
  for (const v of [...graph.keys()].sort(cmp)) if (!index.has(v)) visit(v);
  return out.sort((x, y) => cmp(x[0], y[0]));
}

/**
 * A closed walk through every folder of a component, by shortest steps inside it: starting
 * at its first folder, to the nearest one not yet visited, …, and back.
 * @param {Map<string, Map<string, unknown>>} graph
 * @param {string[]} scc
 * @returns {string[]} the folders, first one repeated at the end
 */
export function walkThrough(graph, scc) {
  const inside = new Set(scc);
  const path = (from, done) => {           // BFS to the nearest folder satisfying done()
    const prev = new Map([[from, null]]);
    const queue = [from];
    while (queue.length > 0) {
      const v = queue.shift();
      for (const w of [...graph.get(v).keys()].sort(cmp)) {
        if (!inside.has(w) || prev.has(w)) continue;
        prev.set(w, v);
        if (done(w)) {
          const steps = [w];
          for (let u = v; u !== from; u = prev.get(u)) steps.unshift(u);
          return steps;
        }
        queue.push(w);
      }
    }
    throw new Error(`${from} reaches nothing in ${scc.join(', ')}`);  // not a component
  };
  const start = scc[0];
  const seen = new Set([start]);
  const walk = [start];
  while (seen.size < inside.size) {
    const steps = path(walk[walk.length - 1], (w) => !seen.has(w));
    for (const s of steps) seen.add(s);
    walk.push(...steps);
  }
  walk.push(...path(walk[walk.length - 1], (w) => w === start));
  return walk;
}

/**
 * The whole check on a list of import edges.
 * @param {{ from: string, to: string, spec: string }[]} edges
 * @param {string[]} allowed `from -> to` edges left out of the graph
 * @returns {{ violations: string[], unneededAllowed: string[] }} `unneededAllowed`: the
 *   entries whose removal alone would not add a violation (fixed, or no longer an edge)
 */
export function check(edges, allowed = ALLOWED) {
  const violations = violationsOf(edges, new Set(allowed));
  const key = violations.join('\n');
  const unneededAllowed = allowed.filter((entry) => {
    const without = new Set(allowed);
    without.delete(entry);
    return violationsOf(edges, without).join('\n') === key;
  });
  return { violations, unneededAllowed };
}

function violationsOf(edges, allow) {
  const kept = edges.filter((e) => !allow.has(`${e.from} -> ${e.to}`));
  const violations = [];
  const seen = new Set();
  for (const e of kept) {
    const why = ruleFor(e.from, e.to);
    const line = `${e.from} imports ${e.to}: ${why}`;
    if (why !== null && !seen.has(line)) { seen.add(line); violations.push(line); }
  }
  violations.sort(cmp);
  const graph = folderGraph(kept);
  for (const scc of cyclicComponents(graph)) {
    const walk = walkThrough(graph, scc);
    const steps = [];
    for (let i = 0; i + 1 < walk.length; i++) {
      const e = graph.get(walk[i]).get(walk[i + 1])[0];
      steps.push(`${e.from} imports ${e.to}`);
    }
    violations.push(`cycle between folders ${walk.join(' -> ')}: ${steps.join('; ')}`);
  }
  return violations;
}

/** Runs `tsc -p . --noEmit --explainFiles` in the checkout and returns its output. */
export function explainFiles(root) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', '.', '--noEmit', '--explainFiles'], { cwd: root, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    // Type errors come first, as `file(line,col): error TS…`; the graph would still be
    // right, but a check that passes on a tree that does not compile would mislead.
    const errors = r.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
    throw new Error(`tsc failed (exit ${r.status}):\n${errors.slice(0, 20).join('\n') || r.stderr}`);
  }
  return r.stdout;
}

function main(argv) {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const i = argv.indexOf('--explain');
  const text = i >= 0 ? readFileSync(argv[i + 1], 'utf8') : explainFiles(root);
  const edges = parseExplainFiles(text);
  if (!edges.some((e) => folderOf(e.from) !== null)) throw new Error('no import found in the tsc output: is it `tsc --explainFiles`?');
  const { violations, unneededAllowed } = check(edges);
  for (const a of unneededAllowed) console.error(`layers: allow-list entry no longer needed, remove it from scripts/layers.mjs: ${a}`);
  for (const v of violations) console.log(v);
  if (violations.length > 0) {
    console.error(`layers: ${violations.length} violation(s); the rules are in README.md, "Tests and benchmark"`);
    return 1;
  }
  return 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    console.error(`layers: ${err instanceof Error ? err.message : err}`);
    process.exitCode = 2;
  }
}
