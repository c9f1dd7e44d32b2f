// The control plane's metrics, with istiod's names where istiod has one: xDS pushes and their
// latency, connected proxies, CSRs received / signed / refused, and the root certificate's expiry.
// Registered on the control plane's own registry and served on 15014 /metrics.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ControlPlaneMetricsSource {
  connectedProxies(): number;
  rootCertNotAfter(): Date | undefined;
}

/** istiod's short xDS type names (pilot/pkg/model/typeurl.go) as the `type` label. */
export function shortTypeName(typeUrl: string): string {
  const last = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
  switch (last) {
    case 'istio.workload.Address':
    case 'istio.workload.Workload':
      return 'wds';
    case 'istio.security.Authorization':
      return 'wads';
    default:
      return last.slice(last.lastIndexOf('.') + 1).toLowerCase();
  }
}

export type CsrRefusal = 'unauthenticated' | 'bad_csr' | 'permission_denied' | 'internal';

export class ControlPlaneMetrics {
  private readonly pushes: Counter<'type'>;
  private readonly pushTime: Histogram<'type'>;
  private readonly convergence: Histogram;
  private readonly csrCount: Counter;
  private readonly issued: Counter;
  private readonly authFailures: Counter;
  private readonly parseErrors: Counter;
  private readonly refused: Counter<'reason'>;

  constructor(registry: Registry, source: ControlPlaneMetricsSource) {
    const registers = [registry];
    this.pushes = new Counter({
      name: 'pilot_xds_pushes',
      help: 'Pilot build and send errors for lds, rds, cds and eds (here: every Delta xDS response sent, by type)',
      labelNames: ['type'],
      registers,
    });
    this.pushTime = new Histogram({
      name: 'pilot_xds_push_time',
      help: 'Total time in seconds Pilot takes to push lds, rds, cds and eds (here: build and write one response)',
      labelNames: ['type'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 3, 5, 10, 20, 30],
      registers,
    });
    this.convergence = new Histogram({
      name: 'pilot_proxy_convergence_time',
      help: 'Delay in seconds between config change and a proxy receiving all required configuration',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 3, 5, 10, 20, 30],
      registers,
    });
    new Gauge({
      name: 'pilot_xds',
      help: 'Number of endpoints connected to this pilot using XDS',
      registers,
      collect() {
        this.set(source.connectedProxies());
      },
    });
    this.csrCount = new Counter({
      name: 'citadel_server_csr_count',
      help: 'The number of CSRs received by Citadel server',
      registers,
    });
    this.issued = new Counter({
      name: 'citadel_server_success_cert_issuance_count',
      help: 'The number of certificates issuances that have succeeded',
      registers,
    });
    this.authFailures = new Counter({
      name: 'citadel_server_authentication_failure_count',
      help: 'The number of authentication failures',
      registers,
    });
    this.parseErrors = new Counter({
      name: 'citadel_server_csr_parsing_err_count',
      help: 'The number of errors occurred when parsing the CSR',
      registers,
    });
    this.refused = new Counter({
      name: 'ambit_ca_csr_refused_total',
      help: 'CSRs refused, by reason (unauthenticated, bad_csr, permission_denied, internal)',
      labelNames: ['reason'],
      registers,
    });
    new Gauge({
      name: 'citadel_server_root_cert_expiry_timestamp',
      help: 'The unix timestamp, in seconds, when Citadel root cert will expire',
      registers,
      collect() {
        const t = source.rootCertNotAfter();
        if (t) this.set(Math.floor(t.getTime() / 1000));
      },
    });
    new Gauge({
      name: 'citadel_server_root_cert_expiry_seconds',
      help: 'The time remaining, in seconds, before the root cert will expire',
      registers,
      collect() {
        const t = source.rootCertNotAfter();
        if (t) this.set(Math.floor((t.getTime() - Date.now()) / 1000));
      },
    });
  }

  /** One xDS response written; `changedAt` is when the first change it carries reached the stream. */
  pushed(typeUrl: string, startedAt: number, changedAt: number | undefined, now = Date.now()): void {
    const type = shortTypeName(typeUrl);
    this.pushes.inc({ type });
    this.pushTime.observe({ type }, (now - startedAt) / 1000);
    if (changedAt !== undefined) this.convergence.observe((now - changedAt) / 1000);
  }

  csrReceived(): void {
    this.csrCount.inc();
  }

  certIssued(): void {
    this.issued.inc();
  }

  csrRefused(reason: CsrRefusal): void {
    this.refused.inc({ reason });
    if (reason === 'unauthenticated') this.authFailures.inc();
    if (reason === 'bad_csr') this.parseErrors.inc();
  }
}
