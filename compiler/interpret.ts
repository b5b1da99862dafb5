/**
 * The reference interpreter: the artifact interface answered by walking the IR plainly,
 * with no precomputed tables. It defines what the compiled module must do; the
 * conformance property test compares the two on random inputs, and the benchmarks
 * measure how much faster the compiled one is.
 */
import type { ArtifactMeta, EffectiveSettings, Phase, PolicyArtifact, Reaction } from '../vocabulary/index.ts';
import {
  composeSettings,
  fallbackReaction,
  matcherMatches,
  matcherRegexes,
  normalizeDomain,
  parseReply,
  patternSpecificity,
  planLimit,
  retryDelayFor,
  ruleReaction,
} from './artifact-lib.ts';
import type { IR, IRRoute } from './ir.ts';

/** An artifact interface over `ir`, answered by interpretation. */
export function interpret(ir: IR, meta: ArtifactMeta): PolicyArtifact {
  const regexes = ir.rules.map((r) => matcherRegexes(r.matcher));
  const byId = new Map(ir.routes.map((r) => [r.id, r]));
  const defaultRoute = byId.get('default')!;
  const routeOf = (id: string): IRRoute => byId.get(id) ?? defaultRoute;

  function route(domain: string, mxHosts?: readonly string[]): string {
    const d = normalizeDomain(domain);
    let best: IRRoute | undefined;
    let bestScore = -1;
    for (const r of ir.routes) {
      for (const p of r.domains) {
        const score = patternSpecificity(p, d);
        // Ties go to domain blocks over providers: they are more specific by definition.
        if (score > bestScore || (score === bestScore && score >= 0 && r.id.startsWith('domain:') && !best!.id.startsWith('domain:'))) {
          best = r;
          bestScore = score;
        }
      }
    }
    if (best) return best.id;
    if (mxHosts && mxHosts.length > 0) {
      let chosen: string | undefined;
      for (const host of mxHosts) {
        const h = normalizeDomain(host);
        let hostBest: string | undefined;
        let hostScore = -1;
        for (const r of ir.routes) {
          for (const p of r.mx) {
            const score = patternSpecificity(p, h);
            if (score > hostScore) {
              hostBest = r.id;
              hostScore = score;
            }
          }
        }
        if (hostBest === undefined || (chosen !== undefined && chosen !== hostBest)) return 'default';
        chosen = hostBest;
      }
      if (chosen) return chosen;
    }
    return 'default';
  }

  function settings(routeId: string, source?: string, tenant?: string): EffectiveSettings {
    const r = routeOf(routeId);
    return composeSettings(r.id, r.settings, ir, source, tenant);
  }

  function react(routeId: string, reply: string, phase?: Phase): Reaction {
    const parsed = parseReply(reply);
    for (const index of routeOf(routeId).rules) {
      const rule = ir.rules[index]!;
      if (matcherMatches(rule.matcher, parsed, phase, regexes[index]!)) return ruleReaction(rule, parsed);
    }
    return fallbackReaction(parsed);
  }

  function retryDelay(routeId: string, attempt: number, reply?: string, curve?: string): number | null {
    const r = routeOf(routeId);
    const reaction = reply === undefined ? undefined : react(r.id, reply);
    return retryDelayFor(reaction, ir.retryCurves[curve ?? r.settings.retry], attempt, r.settings.expireSeconds);
  }

  function warmupLimit(ramp: string, routeId: string, ageDays: number): number {
    const w = ir.warmups[ramp];
    if (!w) return Infinity;
    const plan = w.routes[routeOf(routeId).id] ?? w.plan;
    return plan ? planLimit(plan, ageDays) : Infinity;
  }

  return Object.freeze({ meta: Object.freeze({ ...meta }), route, settings, react, retryDelay, warmupLimit });
}
