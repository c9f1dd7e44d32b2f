import { describe, expect, it } from 'vitest';
import { rateLimitHeaders, TokenBucket } from '../../../src/waypoint/resilience/rate-limit.js';
import type { RateLimitPolicy } from '../../../src/waypoint/resilience/types.js';

function bucket(policy: RateLimitPolicy) {
  let now = 1_000_000;
  const b = new TokenBucket(policy, () => now);
  return { b, advance: (ms: number) => (now += ms) };
}

describe('TokenBucket', () => {
  it('starts full, refuses when empty with the time to the next fill, and refills', () => {
    const { b, advance } = bucket({ maxTokens: 3, tokensPerFill: 1, fillIntervalMs: 1000 });
    expect(b.take()).toEqual({ allowed: true, remaining: 2 });
    expect(b.take()).toEqual({ allowed: true, remaining: 1 });
    expect(b.take()).toEqual({ allowed: true, remaining: 0 });
    expect(b.take()).toEqual({ allowed: false, resetMs: 1000 });
    advance(400);
    expect(b.take()).toEqual({ allowed: false, resetMs: 600 });
    advance(600);
    expect(b.take()).toEqual({ allowed: true, remaining: 0 });
    expect(b.take()).toEqual({ allowed: false, resetMs: 1000 });
  });

  it('never holds more than maxTokens', () => {
    const { b, advance } = bucket({ maxTokens: 3, tokensPerFill: 1, fillIntervalMs: 1000 });
    b.take();
    advance(60_000);
    expect(b.tokens()).toBe(3);
  });

  it.each([
    // elapsed ms after emptying a 10-token bucket that gains 4 per 500 ms → tokens
    [0, 0],
    [499, 0],
    [500, 4],
    [999, 4],
    [1000, 8],
    [1500, 10],
  ])('after %i ms: %i tokens', (elapsed, tokens) => {
    const { b, advance } = bucket({ maxTokens: 10, tokensPerFill: 4, fillIntervalMs: 500 });
    for (let i = 0; i < 10; i++) b.take();
    advance(elapsed);
    expect(b.tokens()).toBe(tokens);
  });

  it('keeps fills on the interval grid when checked late', () => {
    const { b, advance } = bucket({ maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 1000 });
    b.take();
    advance(1700);
    expect(b.take()).toEqual({ allowed: true, remaining: 0 });
    expect(b.take()).toEqual({ allowed: false, resetMs: 300 });
  });

  it.each([
    { maxTokens: 0, tokensPerFill: 1, fillIntervalMs: 1000 },
    { maxTokens: 1, tokensPerFill: 0, fillIntervalMs: 1000 },
    { maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 0 },
    { maxTokens: 1, tokensPerFill: 1, fillIntervalMs: Number.NaN },
  ])('rejects %j', (policy) => {
    expect(() => new TokenBucket(policy)).toThrow(RangeError);
  });

  it('produces the 429 headers', () => {
    const policy = { maxTokens: 5, tokensPerFill: 5, fillIntervalMs: 60_000 };
    expect(rateLimitHeaders(policy, { allowed: true, remaining: 4 })).toEqual({
      'x-ratelimit-limit': '5',
      'x-ratelimit-remaining': '4',
    });
    expect(rateLimitHeaders(policy, { allowed: false, resetMs: 1200 })).toEqual({
      'x-ratelimit-limit': '5',
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': '2',
      'x-envoy-ratelimited': 'true',
    });
  });
});
