/**
 * A built-in rule's score mode (config `scores`): one option, `score`, and one way to use
 * it, so every rule that offers the mode reads the same. Not a rule itself.
 */
import { RULE_LIMITS, reasonId, type RuleContext } from 'portcullis/sdk';

/**
 * The option of a rule's score mode: above 0, the rule adds this many points under its
 * symbol instead of refusing or tagging on its own, and the total of all rules decides
 * (SmtpEvt's "combine the information … spam indicators").
 */
export const scoreOption = (what: string) =>
  ({ type: 'number', minimum: 0, maximum: RULE_LIMITS.maxPoints, default: 0, description: `Score mode: above 0, ${what} adds this many points (config scores) instead of deciding alone.` }) as const;

/** Whether the rule is in score mode (its `score` option above 0). */
export const scoreMode = (o: { score: number }): boolean => o.score > 0;

/**
 * In score mode, adds the rule's points (times `weight`, e.g. a list's) under `symbol`
 * and returns true: the caller then returns without a verdict. Otherwise false: the
 * rule decides alone.
 * @example if (scored(ctx, 'dbl')) return;
 */
export function scored(ctx: RuleContext<{ score: number }>, symbol: string, weight = 1): boolean {
  if (!scoreMode(ctx.options)) return false;
  const points = Math.max(-RULE_LIMITS.maxPoints, Math.min(RULE_LIMITS.maxPoints, ctx.options.score * weight));
  ctx.score(reasonId(symbol), points);
  return true;
}
