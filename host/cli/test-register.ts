/** `node --import` this: registers test-hooks.ts in a test process of `portcullis test`. */
import { register } from 'node:module';

register('./test-hooks.js', import.meta.url);
