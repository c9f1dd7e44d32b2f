// The resilience state one destination (service) needs in the waypoint, built in one place
// from its DestinationPolicy: a balancer, a retry budget, a pool limiter (unlimited without a
// `connectionPool`: it also counts the pooled upstream connections), and — when the
// DestinationRule asks — an outlier detector and a rate-limit bucket. The waypoint keeps one per
// destination and builds a new one when the destination's policy changes (state such as
// ejections then starts afresh, as when Envoy replaces a cluster).
import { createBalancer, type Balancer, type LbEndpoint } from './lb.js';
import { OutlierDetector } from './outlier.js';
import { ConnectionPoolLimiter } from './pool.js';
import { TokenBucket } from './rate-limit.js';
import { RetryBudget, type RetryBudgetOptions } from './retry.js';
import type { Clock, DestinationPolicy, RandomSource } from './types.js';

export interface DestinationResilience<E extends LbEndpoint = LbEndpoint> {
  readonly policy: DestinationPolicy;
  readonly balancer: Balancer<E>;
  readonly retryBudget: RetryBudget;
  readonly outlier?: OutlierDetector;
  readonly pool: ConnectionPoolLimiter;
  readonly rateLimit?: TokenBucket;
}

export interface DestinationResilienceOptions {
  clock?: Clock;
  random?: RandomSource;
  retryBudget?: RetryBudgetOptions;
}

export function createDestinationResilience<E extends LbEndpoint = LbEndpoint>(
  policy: DestinationPolicy,
  options: DestinationResilienceOptions = {},
): DestinationResilience<E> {
  const clock = options.clock ?? performance.now.bind(performance);
  return {
    policy,
    balancer: createBalancer<E>(policy.lb, options.random),
    retryBudget: new RetryBudget(options.retryBudget),
    ...(policy.outlier ? { outlier: new OutlierDetector(policy.outlier, clock) } : {}),
    pool: new ConnectionPoolLimiter(policy.pool ?? {}),
    ...(policy.rateLimit ? { rateLimit: new TokenBucket(policy.rateLimit, clock) } : {}),
  };
}
