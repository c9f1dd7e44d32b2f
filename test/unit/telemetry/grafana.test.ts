import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { L4Metrics } from '../../../src/telemetry/metrics.js';
import { createRequestMetrics } from '../../../src/telemetry/request-metrics.js';
import { ControlPlaneMetrics } from '../../../src/telemetry/controlplane-metrics.js';

describe('daemonset/grafana-dashboard.json', () => {
  it('uses only metrics ambit exports', () => {
    const reg = new Registry();
    new L4Metrics(reg);
    createRequestMetrics(reg);
    new ControlPlaneMetrics(reg, { connectedProxies: () => 0, rootCertNotAfter: () => undefined });
    const exported = new Set(reg.getMetricsAsArray().map((m) => m.name));
    const dash = JSON.parse(
      readFileSync(new URL('../../../daemonset/grafana-dashboard.json', import.meta.url), 'utf8'),
    ) as {
      panels: { targets?: { expr: string }[] }[];
      templating: { list: { query?: unknown }[] };
    };
    const exprs = [
      ...dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...dash.templating.list.map((t) => JSON.stringify(t.query ?? '')),
    ];
    const used = new Set(exprs.flatMap((e) => e.match(/\b(istio|pilot|citadel|ambit)_[a-z_]+/g) ?? []));
    expect(used.size).toBeGreaterThan(10);
    for (const name of used)
      expect(exported.has(name) || exported.has(name.replace(/_(bucket|sum|count)$/, '')), name).toBe(true);
  });
});
