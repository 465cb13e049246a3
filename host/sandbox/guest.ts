/**
 * The JavaScript that runs inside every rule's QuickJS context around the rule's own
 * bundle. It captures the intrinsics it needs before the rule runs, so a rule that
 * tampers with `JSON` or prototypes only breaks its own verdicts. It returns strings,
 * never objects, so the host never runs guest code while converting a result.
 */
import { PHASES } from '../../sdk/events.js';

/** Where esbuild places the bundle (never written): source map paths are relative to it. */
export const BUNDLE_DIR = '/portcullis-out';

/** Global name the rule bundle is assigned to (esbuild `globalName`). */
export const BUNDLE_GLOBAL = '__portcullisRule';

/** Evaluated before the bundle: defines `__pc` with install/setOptions/call. */
export const GUEST_PRELUDE = `globalThis.__pc = (function () {
  'use strict';
  const parse = JSON.parse, stringify = JSON.stringify, isArray = Array.isArray, Str = String;
  const freeze = Object.freeze, keys = Object.keys, assign = Object.assign;
  // The host's store function, captured before the rule's code runs.
  const hostStore = globalThis.__portcullisStore;
  delete globalThis.__portcullisStore;
  const storeCall = (op, args) => parse(hostStore(op, stringify(args)));
  const store = freeze({
    hit: (key, windowSeconds) => storeCall('hit', [key, windowSeconds]),
    count: (key, windowSeconds) => storeCall('count', [key, windowSeconds]),
    blacklisted: (ip) => storeCall('blacklisted', [ip]),
    mailbox: (address) => storeCall('mailbox', [address]),
    localDomain: (domain) => storeCall('localDomain', [domain]),
    listHas: (list, value) => storeCall('listHas', [list, value]),
    listValues: (list) => storeCall('listValues', [list]),
    listAdd: (list, value) => { storeCall('listAdd', [list, value]); },
  });
  const PHASES = ${JSON.stringify(PHASES)};
  let def = null, options = {};
  // Inline tier: per session, the parts of its events that rarely change (see inline.ts).
  const sessions = new Map();
  const MAX_SESSIONS = 10000;
  function deepFreeze(o) {
    if (o && typeof o === 'object') { for (const k of keys(o)) deepFreeze(o[k]); freeze(o); }
    return o;
  }
  function run(phase, event) {
    const fx = {};
    const ctx = {
      options,
      addHeader(name, value) { (fx.headers || (fx.headers = [])).push([Str(name), Str(value)]); },
      blacklist(ttlSeconds, reason) { fx.blacklist = { ttlSeconds: +ttlSeconds, reason: Str(reason) }; },
      delay(ms) { fx.delayMs = (fx.delayMs || 0) + (+ms); },
      log(message) { (fx.logs || (fx.logs = [])).push(Str(message)); },
      store,
    };
    const v = def.phases[phase](event, ctx);
    if (v && typeof v.then === 'function') return '!the handler returned a Promise: handlers must be synchronous';
    // '' = no opinion and no effects: the common case costs no JSON on either side.
    if ((v === undefined || (v && v.action === 'next' && keys(v).length === 1)) && keys(fx).length === 0) return '';
    try { return stringify({ v: v === undefined ? null : v, fx }); }
    catch (e) { return '!the verdict is not JSON: ' + Str(e && e.message); }
  }
  return {
    install(mod) {
      const d = mod && typeof mod === 'object' ? mod.default : undefined;
      if (!d || typeof d !== 'object') throw new TypeError('the rule file must default-export defineRule({ ... })');
      if (typeof d.name !== 'string' || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(d.name)) throw new TypeError('name must be a kebab-case string (a-z, 0-9, -), got ' + stringify(d.name));
      if (!d.phases || typeof d.phases !== 'object') throw new TypeError('phases must be an object of handlers');
      const phases = [];
      for (const key of Object.keys(d.phases)) {
        if (PHASES.indexOf(key) < 0) throw new TypeError('phases.' + key + ' is not a phase; phases are ' + PHASES.join(', '));
        if (typeof d.phases[key] !== 'function') throw new TypeError('phases.' + key + ' must be a function');
        phases.push(key);
      }
      if (d.priority !== undefined && (typeof d.priority !== 'number' || !isFinite(d.priority))) throw new TypeError('priority must be a number');
      if (d.needs !== undefined && !isArray(d.needs) && typeof d.needs !== 'function') throw new TypeError('needs must be an array or a function of the options');
      def = d;
      return stringify({ name: d.name, description: typeof d.description === 'string' ? d.description : null,
        priority: d.priority === undefined ? 100 : d.priority, options: d.options || null, phases });
    },
    // Returns the needs (JSON), which may depend on the options.
    setOptions(json) {
      options = parse(json);
      const n = typeof def.needs === 'function' ? def.needs(options) : def.needs || [];
      if (!isArray(n)) throw new TypeError('needs(options) must return an array');
      return stringify(n.map(Str));
    },
    // sessionJson / envelopeJson are null when unchanged since this session's last call here.
    callDelta(phase, sid, time, sessionJson, envelopeJson, restJson) {
      let c = sessions.get(sid);
      if (!c) {
        if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value);
        sessions.set(sid, (c = {}));
      }
      if (sessionJson !== null) c.s = deepFreeze(parse(sessionJson));
      if (envelopeJson !== null) c.e = envelopeJson === '' ? undefined : deepFreeze(parse(envelopeJson));
      const event = parse(restJson);
      event.session = assign({}, c.s, { time });
      if (c.e !== undefined) event.envelope = c.e;
      return run(phase, event);
    },
    drop(sid) { sessions.delete(sid); },
  };
})();`;

/** Evaluated after the bundle: installs the default export and returns its metadata JSON. */
export const GUEST_INSTALL = `__pc.install(${BUNDLE_GLOBAL})`;
