import { describe, expect, it } from 'vitest';
import {
  AccessLogPolicy,
  formatAccessLogMode,
  parseAccessLogMode,
  traceIdOf,
} from '../../../src/telemetry/access-log.js';
import { responseFlagFor } from '../../../src/telemetry/connection-telemetry.js';
import { AmbitError } from '../../../src/common/errors.js';

describe('access log mode', () => {
  it.each([
    ['off', { kind: 'off' }],
    ['full', { kind: 'full' }],
    ['sample:0.1', { kind: 'sample', ratio: 0.1 }],
    ['sample:1', { kind: 'sample', ratio: 1 }],
    ['sample:0', { kind: 'off' }],
  ])('parses %s', (text, mode) => {
    expect(parseAccessLogMode(text)).toEqual(mode);
  });

  it.each(['sample:2', 'sample:', 'verbose', 'sample:-0.1'])('refuses %s with a reason', (text) => {
    expect(() => parseAccessLogMode(text)).toThrow(/off, full or sample:RATIO/);
  });

  it('formats back', () => {
    expect(formatAccessLogMode({ kind: 'sample', ratio: 0.25 })).toBe('sample:0.25');
  });

  it('samples by ratio', () => {
    const values = [0.05, 0.5, 0.09, 0.99];
    const p = new AccessLogPolicy({ kind: 'sample', ratio: 0.1 }, () => values.shift()!);
    expect([p.logComplete(), p.logComplete(), p.logComplete(), p.logComplete()]).toEqual([
      true,
      false,
      true,
      false,
    ]);
    p.mode = { kind: 'off' };
    expect(p.logComplete()).toBe(false);
    p.mode = { kind: 'full' };
    expect(p.logComplete()).toBe(true);
  });
});

describe('traceIdOf', () => {
  it('reads the trace id of a W3C traceparent', () => {
    expect(traceIdOf('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')).toBe(
      '0af7651916cd43dd8448eb211c80319c',
    );
    expect(traceIdOf('garbage')).toBeUndefined();
    expect(traceIdOf(undefined)).toBeUndefined();
  });
});

describe('responseFlagFor', () => {
  it.each([
    ['HBONE_POLICY_DENIED', 'DENY'],
    ['HBONE_TLS_FAILURE', 'TLS_FAILURE'],
    ['HBONE_IDENTITY_MISMATCH', 'IDENTITY_ERROR'],
    ['HBONE_CONNECT_REFUSED', 'CONNECT'],
    ['ROUTE_NO_ENDPOINT', 'CONNECT'],
  ] as const)('%s → %s', (code, flag) => {
    expect(responseFlagFor(new AmbitError(code, 'x'))).toBe(flag);
  });
  it('a plain socket error is CONNECT', () => {
    expect(responseFlagFor(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toBe('CONNECT');
  });
});
