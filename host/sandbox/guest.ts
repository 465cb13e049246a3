/**
 * The JavaScript that runs inside every rule's QuickJS context around the rule's own
 * bundle. It captures the intrinsics it needs before the rule runs, so a rule that
 * tampers with `JSON` or prototypes only breaks its own verdicts. It returns strings,
 * never objects, so the host never runs guest code while converting a result.
 *
 * What it builds (ctx.store's operations, the phases, the name format) comes from the
 * SDK's lists, so the guest cannot offer something the host does not answer.
 */
import { PHASES, RULE_NAME_PATTERN, STORE_OPS, TRANSACTION_PHASES } from '../../sdk/index.js';

/** Where esbuild places the bundle (never written): source map paths are relative to it. */
export const BUNDLE_DIR = '/portcullis-out';

/** Global name the rule bundle is assigned to (esbuild `globalName`). */
export const BUNDLE_GLOBAL = '__portcullisRule';

/**
 * Evaluated before the bundles: defines `__pc` with install/setOptions/callDelta/again/drop.
 * A module holds one rule or several (a group sharing the module): `install` adds one,
 * and every call names the rule by its index.
 */
export const GUEST_PRELUDE = `globalThis.__pc = (function () {
  'use strict';
  const parse = JSON.parse, stringify = JSON.stringify, isArray = Array.isArray, Str = String;
  const freeze = Object.freeze, keys = Object.keys, assign = Object.assign;
  // The host's store function, captured before the rule's code runs.
  const hostStore = globalThis.__portcullisStore;
  delete globalThis.__portcullisStore;
  const store = {};
  for (const op of ${JSON.stringify(STORE_OPS)}) store[op] = function () { return parse(hostStore(op, stringify(Array.prototype.slice.call(arguments)))); };
  freeze(store);
  const PHASES = ${JSON.stringify(PHASES)};
  const TX_PHASES = ${JSON.stringify(TRANSACTION_PHASES)};
  const NAME = new RegExp(${JSON.stringify(RULE_NAME_PATTERN)});
  // The module's rules, in install order: { def, options, lines } (lines: each file-read option's value lines).
  const rules = [];
  // The event of the last callDelta: the next rules of this module in the phase reuse it.
  let last = null;
  // Per session, the parts of its events that rarely change (see chain.ts).
  const sessions = new Map();
  const MAX_SESSIONS = 10000;
  function deepFreeze(o) {
    if (o && typeof o === 'object') { for (const k of keys(o)) deepFreeze(o[k]); freeze(o); }
    return o;
  }
  function run(phase, i, event) {
    const rule = rules[i];
    if (!rule || !event) return '!no such rule or event in this module';
    const fx = {};
    const hasTx = TX_PHASES.indexOf(phase) >= 0;
    const noteWriter = (scope) => function (key, value) {
      if (typeof key !== 'string' || !key) throw new TypeError('a note key must be a non-empty string');
      if (scope === 't' && !hasTx) throw new TypeError('ctx.note.tx: there is no transaction at ' + phase + ' (use ctx.note.session)');
      (fx.notes || (fx.notes = [])).push(value === undefined ? [scope, key] : [scope, key, value]);
    };
    const ctx = {
      options: rule.options,
      addHeader(name, value) { (fx.headers || (fx.headers = [])).push([Str(name), Str(value)]); },
      removeHeader(name) { (fx.removeHeaders || (fx.removeHeaders = [])).push(Str(name)); },
      blacklist(ttlSeconds, reason) { fx.blacklist = { ttlSeconds: +ttlSeconds, reason: Str(reason) }; },
      markWellBehaved(ttlSeconds) { fx.wellBehaved = { ttlSeconds: +ttlSeconds }; },
      delay(ms) { fx.delayMs = (fx.delayMs || 0) + (+ms); },
      log(message) { (fx.logs || (fx.logs = [])).push(Str(message)); },
      optionLine(option, index) { const l = rule.lines[Str(option)]; return (isArray(l) && l[index]) || null; },
      score(symbol, points) { (fx.scores || (fx.scores = [])).push([Str(symbol), +points]); },
      note: freeze({ session: noteWriter('s'), tx: noteWriter('t') }),
      store,
    };
    const v = rule.def.phases[phase](event, ctx);
    if (v && typeof v.then === 'function') return '!the handler returned a Promise: handlers must be synchronous';
    // '' = no opinion and no effects: the common case costs no JSON on either side.
    if ((v === undefined || (v && v.action === 'next' && keys(v).length === 1)) && keys(fx).length === 0) return '';
    try { return stringify({ v: v === undefined ? null : v, fx }); }
    catch (e) { return '!the verdict or a note is not JSON: ' + Str(e && e.message); }
  }
  return {
    install(mod) {
      const d = mod && typeof mod === 'object' ? mod.default : undefined;
      if (!d || typeof d !== 'object') throw new TypeError('the rule file must default-export defineRule({ ... }) (a helper module goes in a subdirectory such as lib/: only the top-level files of a rules directory are rules)');
      if (typeof d.name !== 'string' || !NAME.test(d.name)) throw new TypeError('name must be a kebab-case string (a-z, 0-9, -), got ' + stringify(d.name));
      if (!d.phases || typeof d.phases !== 'object') throw new TypeError('phases must be an object of handlers');
      const phases = [];
      for (const key of keys(d.phases)) {
        if (PHASES.indexOf(key) < 0) throw new TypeError('phases.' + key + ' is not a phase; phases are ' + PHASES.join(', '));
        if (typeof d.phases[key] !== 'function') throw new TypeError('phases.' + key + ' must be a function');
        phases.push(key);
      }
      if (d.priority !== undefined && (typeof d.priority !== 'number' || !isFinite(d.priority))) throw new TypeError('priority must be a number');
      if (d.needs !== undefined && !isArray(d.needs) && typeof d.needs !== 'function') throw new TypeError('needs must be an array or a function of the options');
      const skip = d.skip === undefined ? {} : d.skip;
      if (!skip || typeof skip !== 'object' || keys(skip).some((k) => k !== 'authenticated' || typeof skip[k] !== 'boolean')) throw new TypeError('skip must be an object like { authenticated: true }');
      if (d.enabled !== undefined && typeof d.enabled !== 'boolean') throw new TypeError('enabled must be true or false');
      rules.push({ def: d, options: {}, lines: {} });
      return stringify({ name: d.name, description: typeof d.description === 'string' ? d.description : null,
        priority: d.priority === undefined ? 100 : d.priority, options: d.options || null, skip: { authenticated: skip.authenticated === true }, enabled: d.enabled !== false, phases });
    },
    // Returns the needs (JSON), which may depend on the options.
    setOptions(i, json, linesJson) {
      const rule = rules[i];
      rule.lines = deepFreeze(parse(linesJson));
      const options = (rule.options = deepFreeze(parse(json)));
      const n = typeof rule.def.needs === 'function' ? rule.def.needs(options) : rule.def.needs || [];
      if (!isArray(n)) throw new TypeError('needs(options) must return an array');
      return stringify(n.map(Str));
    },
    // sessionJson / envelopeJson are null when unchanged since this session's last call here.
    callDelta(phase, i, sid, time, sessionJson, envelopeJson, restJson) {
      last = null;
      let c = sessions.get(sid);
      if (!c) {
        if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value);
        sessions.set(sid, (c = {}));
      }
      if (sessionJson !== null) c.s = deepFreeze(parse(sessionJson));
      if (envelopeJson !== null) c.e = envelopeJson === '' ? undefined : deepFreeze(parse(envelopeJson));
      // In a shared module, frozen throughout: the rules after this one see it as it came.
      // (A module of one rule skips the cost: its changes reach nobody else.)
      const event = parse(restJson);
      if (rules.length > 1) for (const k of keys(event)) deepFreeze(event[k]);
      event.session = freeze(assign({}, c.s, { time }));
      if (c.e !== undefined) event.envelope = c.e;
      last = freeze(event);
      return run(phase, i, last);
    },
    again(phase, i) { return run(phase, i, last); },
    drop(sid) { sessions.delete(sid); },
  };
})();`;

/** Evaluated after the bundle: installs the default export and returns its metadata JSON. */
export const GUEST_INSTALL = `__pc.install(${BUNDLE_GLOBAL})`;
