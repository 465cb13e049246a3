/**
 * Portcullis SDK: everything a rule author needs. Import it as `portcullis/sdk`.
 * It is bundled into each rule and runs inside the sandbox, so it must stay free of
 * Node APIs.
 */
export * from './events.js';
export * from './verdicts.js';
export * from './rule.js';
