/**
 * Optimisation: decisions about how the artifact answers fast, made once at compile
 * time and handed to `emit` as a plan. Semantics never change here: the plan only
 * says which rules can possibly match which replies, so fewer are tried.
 *
 * - Routes with the same ordered rule list share one compiled rule chain.
 * - Each chain is split by reply code class (2, 3, 4, 5, or 0 for "no code"): a rule
 *   with code matchers can only match the classes its codes start with; one without
 *   matches failures only (4xx, 5xx, or a reply without a code).
 */
import type { IR, IRRule } from './ir.ts';

/** Reply code classes a chain dispatches on; 0 stands for a reply without a code. */
export const CODE_CLASSES = [2, 3, 4, 5, 0] as const;

export interface EmitPlan {
  /** Distinct ordered rule lists. */
  chains: { rules: number[]; byClass: Record<number, number[]> }[];
  /** For each route (IR order), its chain. */
  chainOfRoute: number[];
}

/** Which classes a rule can match. A rule without codes is about failures: 4xx, 5xx, or no code. */
export function classesOf(rule: IRRule): number[] {
  if (rule.matcher.codes.length === 0) return [4, 5, 0];
  return [...new Set(rule.matcher.codes.map((c) => Number(c[0])))].sort();
}

export function optimize(ir: IR): EmitPlan {
  const chainIndex = new Map<string, number>();
  const chains: EmitPlan['chains'] = [];
  const chainOfRoute = ir.routes.map((route) => {
    const key = route.rules.join(',');
    let index = chainIndex.get(key);
    if (index === undefined) {
      index = chains.length;
      chainIndex.set(key, index);
      const byClass: Record<number, number[]> = {};
      for (const cls of CODE_CLASSES) byClass[cls] = route.rules.filter((r) => classesOf(ir.rules[r]!).includes(cls));
      chains.push({ rules: route.rules, byClass });
    }
    return index;
  });
  return { chains, chainOfRoute };
}
