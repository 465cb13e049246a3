/**
 * Portcullis SDK: everything a rule author needs. Import it as `portcullis/sdk`.
 * It is bundled into each rule and runs inside the sandbox, so it must stay free of
 * Node APIs, and it imports nothing from the host: the host imports it.
 */
export * from './events.js';
export * from './replies.js';
export * from './verdicts.js';
export * from './rule.js';
export * from './access.js';
export * from './record.js';
