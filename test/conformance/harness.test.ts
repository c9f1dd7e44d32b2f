// The conformance harness itself, without a mesh: the comparisons fail on each kind of wrong
// answer (so a passing conformance run means something), the weight rule is the suite's, the echo
// format reads back as the suite parses it, and the report counts as the suite's reports.go does.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { MeshCase, MeshTest } from './case-types.js';
import { CORE_TESTS } from './cases-core.js';
import { EXTENDED_TESTS } from './cases-extended.js';
import { GRPC_TESTS } from './cases-grpc.js';
import { compareAnswer } from './compare.js';
import type { ClientAnswer } from './echo-client.js';
import { formatEcho, parseEcho } from './echo-format.js';
import { buildReport, writeReport, type TestResult } from './report.js';
import { backendOf, weightError } from './runner.js';

const IMPL = { organization: 'o', project: 'p', url: 'u', version: '0', contact: ['c'] };

function answer(o: {
  status?: number;
  pod?: string;
  url?: string;
  headers?: [string, string][];
  response?: Record<string, string>;
}): ClientAnswer {
  const body = formatEcho({
    serviceVersion: 'v1',
    servicePort: 8080,
    host: 'echo',
    url: o.url ?? '/',
    method: 'GET',
    proto: 'HTTP/1.1',
    ip: '127.0.0.1',
    hostname: o.pod ?? 'echo-v1-abc-r1',
    headers: o.headers ?? [],
  });
  return { status: o.status ?? 200, responseHeaders: o.response ?? {}, echo: parseEcho(body), body };
}

describe('compareAnswer fails on every kind of wrong answer', () => {
  const c: MeshCase = {
    name: 'x',
    request: { path: '/a?q=1' },
    backend: 'echo-v1',
    seen: { headers: { 'X-Add': 'one,two' }, absent: ['X-Gone'] },
    responseHeaders: { 'X-Set': 'set' },
    absentResponseHeaders: ['X-Not'],
  };
  const good = {
    url: '/a?q=1',
    headers: [
      ['X-Add', 'one'],
      ['x-add', 'two'],
    ] as [string, string][],
    response: { 'x-set': 'set' },
  };
  it.each([
    ['a matching answer', good, undefined],
    ['another status', { ...good, status: 503 }, /status 503/],
    [
      'a value joined differently',
      { ...good, headers: [['X-Add', 'one, two']] as [string, string][] },
      /X-Add/,
    ],
    [
      'a header that should be gone',
      { ...good, headers: [...good.headers, ['X-Gone', '1']] as [string, string][] },
      /X-Gone/,
    ],
    ['a missing response header', { ...good, response: {} }, /X-Set/],
    [
      'a response header that should be absent',
      { ...good, response: { 'x-set': 'set', 'x-not': '1' } },
      /X-Not/,
    ],
    ['another backend', { ...good, pod: 'echo-v2-abc-r1' }, /echo-v2/],
    ['another path', { ...good, url: '/a' }, /path/],
  ])('%s', (_n, o, want) => {
    const why = compareAnswer(c, answer(o));
    if (want === undefined) expect(why).toBeUndefined();
    else expect(why).toMatch(want);
  });

  it.each([
    ['http://example.org/r', { host: 'example.org' }, undefined],
    ['http://example.org:8080/r', { host: 'example.org' }, /port 8080, want none or 80/],
    ['https://echo/r', {}, /scheme https/],
    ['https://echo:443/r', { scheme: 'https' }, undefined],
    ['http://echo:8083/r', { port: '8083' }, undefined],
    ['http://echo/other', {}, /path \/other, want \/r/],
    ['/r', {}, /not an absolute URL/],
  ])('a redirect to %s against %j', (location, redirect, want) => {
    const r: MeshCase = { name: 'r', request: { path: '/r' }, status: [302], redirect };
    const a: ClientAnswer = { status: 302, responseHeaders: { location }, echo: parseEcho(''), body: '' };
    const why = compareAnswer(r, a);
    if (want === undefined) expect(why).toBeUndefined();
    else expect(why).toMatch(want);
  });
});

describe('weights and names as the suite reads them', () => {
  it('a backend is the pod name without its last two parts', () => {
    expect(backendOf('echo-v1-5d8f9c7b4-x2k9p')).toBe('echo-v1');
    expect(backendOf('echo')).toBe('echo');
  });
  it('accepts shares within 0.05 and refuses others, and unexpected pods', () => {
    const pods = (a: number, b: number) => [
      ...Array<string>(a).fill('echo-v1-h-a'),
      ...Array<string>(b).fill('echo-v2-h-b'),
    ];
    expect(weightError(pods(360, 140), { 'echo-v1': 0.7, 'echo-v2': 0.3 })).toBeUndefined();
    expect(weightError(pods(400, 100), { 'echo-v1': 0.7, 'echo-v2': 0.3 })).toMatch(/echo-v1 got 0.8/);
    expect(weightError(pods(500, 0), { 'echo-v1': 0.7, 'echo-v2': 0.3 })).toMatch(
      /1 backends got traffic, want 2/,
    );
    expect(weightError(['echo-v3-h-c'], { 'echo-v1': 1 })).toMatch(/unexpected pod/);
  });
  it('reads the first Hostname and every RequestHeader line', () => {
    const e = parseEcho('RequestHeader=A:1\nHostname=p-1-2\nRequestHeader=a:2\nHostname=q\n');
    expect(e.hostname).toBe('p-1-2');
    expect(e.requestHeaders.get('a')).toEqual(['1', '2']);
  });
});

describe('the report counts as the suite does', () => {
  const all: MeshTest[] = [...CORE_TESTS, ...EXTENDED_TESTS, ...GRPC_TESTS];
  const results = (failed: string[]): TestResult[] =>
    all.map((test) => ({ test, outcome: failed.includes(test.shortName) ? 'failed' : 'passed' }));
  type Profile = {
    name: string;
    core: { statistics: object };
    extended?: { statistics: object; failedTests?: string[] };
  };

  it('MESH-HTTP: the 7 core and 7 extended tests of the profile; MESH-GRPC: MeshBasic and the 2 gRPC tests', () => {
    const r = buildReport(results([]), IMPL) as { profiles: Profile[]; succeededProvisionalTests: string[] };
    const http = r.profiles.find((p) => p.name === 'MESH-HTTP')!;
    const grpc = r.profiles.find((p) => p.name === 'MESH-GRPC')!;
    expect(http.core.statistics).toEqual({ Failed: 0, Passed: 7, Skipped: 0 });
    expect(http.extended?.statistics).toEqual({ Failed: 0, Passed: 7, Skipped: 0 });
    expect(grpc.core.statistics).toEqual({ Failed: 0, Passed: 3, Skipped: 0 });
    expect(grpc.extended).toBeUndefined();
    expect(r.succeededProvisionalTests).toEqual([
      'MeshHTTPRoute303Redirect',
      'MeshHTTPRoute307Redirect',
      'MeshHTTPRoute308Redirect',
      'MeshHTTPRouteNamedRule',
    ]);
  });

  it('a failure is counted where the test belongs and turns the result to failure', () => {
    const r = buildReport(results(['MeshHTTPRouteRewritePath', 'MeshBasic']), IMPL) as {
      profiles: Profile[];
    };
    const http = r.profiles.find((p) => p.name === 'MESH-HTTP')!;
    expect(http.extended).toMatchObject({
      result: 'failure',
      statistics: { Failed: 1, Passed: 6, Skipped: 0 },
      failedTests: ['MeshHTTPRouteRewritePath'],
    });
    expect(http.core).toMatchObject({ result: 'failure', statistics: { Failed: 1, Passed: 6, Skipped: 0 } });
    expect(r.profiles.find((p) => p.name === 'MESH-GRPC')!.core).toMatchObject({ result: 'failure' });
  });
});

describe('the report file', () => {
  it('quotes the date and the version as the published reports do, and reads back the same', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ambit-report-')), 'r.yaml');
    const report = buildReport([], { ...IMPL, version: '1.30' }, new Date('2026-01-02T03:04:05Z'));
    writeReport(file, report);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('date: "2026-01-02T03:04:05Z"');
    expect(text).toContain('version: "1.30"');
    expect(parse(text)).toEqual(report);
  });
});

describe('the raw query of a redirect', () => {
  it('is compared byte for byte when a case names it', () => {
    const r: MeshCase = {
      name: 'q',
      request: { path: '/r?a=b%20c' },
      status: [302],
      redirect: { query: 'a=b%20c' },
    };
    const at = (location: string): ClientAnswer => ({
      status: 302,
      responseHeaders: { location },
      echo: parseEcho(''),
      body: '',
    });
    expect(compareAnswer(r, at('http://echo/r?a=b%20c'))).toBeUndefined();
    expect(compareAnswer(r, at('http://echo/r?a=b+c'))).toMatch(/query \?a=b\+c/);
  });
});
