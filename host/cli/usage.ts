/**
 * A command line the command cannot run: main prints the message and that command's
 * usage (from USAGE in main.ts, the one home of usage text) and exits 64 (EX_USAGE).
 */
export class UsageError extends Error {}
