/**
 * `portcullis check [--config FILE] [--rules DIR]`: validates the config, type-checks the
 * admin's rules against the SDK, compiles every rule, loads it in the sandbox and
 * validates its options, and reports every problem (JSON path, or file:line:col). Exit 0
 * when all is well, 1 otherwise (like `postfix check` and `rspamadm configtest`).
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/config.js';
import { checkerCommandProblem } from '../external-checker.js';
import { loadRuleSet, offReason, RuleSetError } from '../pipeline/ruleset.js';
import { Sandbox } from '../sandbox/sandbox.js';
import { adminRuleFiles, formatTypeProblem, typeCheckRules } from '../typecheck.js';

export async function check(argv: string[], out = process.stdout, err = process.stderr): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, rules: { type: 'string' } }, strict: true });
  const source = values.config ?? '(embedded defaults)';
  let config;
  try {
    config = loadConfig(values.config, { rulesDir: values.rules });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const line of e.lines) err.write(`error: config ${line}\n`);
    return 1;
  }
  // Not a rule problem, but one `check` is for: without its program every message gets 451.
  const checker = config.checker && checkerCommandProblem(config.checker.command);
  // The compiler runs beside the loader: it is another process.
  const typed = typeCheckRules(adminRuleFiles(config));
  const sandbox = new Sandbox({ workers: 1 });
  const problems: string[] = checker ? [`config ${source}: /checker/command/0: ${checker}`] : [];
  try {
    const rs = await loadRuleSet(config, sandbox, 1);
    const typeProblems = await typed;
    if (!checker) out.write(`ok: config ${source}\n`);
    for (const w of rs.warnings) err.write(`warning: ${w}\n`);
    for (const r of rs.rules) {
      if (typeProblems.some((t) => t.file === r.file)) continue;
      out.write(`ok: rule ${r.name} (${r.file}) priority ${r.priority}, phases ${r.meta.phases.join(',')}${r.meta.skip.authenticated ? ', skips authenticated clients' : ''}${r.action === 'enforce' ? '' : `, action ${r.action}`}${r.placeText ? `, ${r.placeText}` : ''}\n`);
    }
    for (const r of rs.off) out.write(`off: rule ${r.name} (${r.file}): ${offReason(r)}\n`);
  } catch (e) {
    if (!(e instanceof RuleSetError)) throw e;
    problems.push(...e.problems);
  } finally {
    await sandbox.close();
  }
  // A file that did not compile has said so already; the compiler would only say it again.
  for (const t of await typed) if (!t.file || !problems.some((p) => p.startsWith(`${t.file}:`))) problems.push(formatTypeProblem(t));
  for (const p of problems) err.write(`error: ${p}\n`);
  return problems.length ? 1 : 0;
}
