// Builds the run's ConformanceReport (gateway-api conformance/apis/v1: ConformanceReport,
// ProfileReport, Status, Statistics) from the results of the tests that ran, with the suite's
// accounting (conformance/utils/suite/reports.go and profiles.go): a test counts in a profile when
// every feature it needs is one of the profile's core or extended features; it is extended when
// any of them is not core; a test whose features ambit does not all claim is not run and not
// counted; a provisional test that passed is listed in succeededProvisionalTests; the extended
// block appears only when an extended test was counted; results: failure if any failed, partial
// if any skipped, else success.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Document, isScalar } from 'yaml';
import type { Feature, MeshTest } from './case-types.js';

export const GATEWAY_API_VERSION = 'v1.5.1';
export const GATEWAY_API_CHANNEL = 'experimental';

/** gateway-api pkg/features/mesh.go MeshExtendedFeatures. */
const MESH_EXTENDED: Feature[] = [
  'MeshClusterIPMatching',
  'MeshConsumerRoute',
  'MeshHTTPRouteRewritePath',
  'MeshHTTPRouteSchemeRedirect',
  'MeshHTTPRouteRedirectPort',
  'MeshHTTPRouteRedirectPath',
  'MeshHTTPRouteBackendRequestHeaderModification',
  'MeshHTTPRouteQueryParamMatching',
  'MeshHTTPRouteNamedRouteRule',
];

interface Profile {
  name: 'MESH-HTTP' | 'MESH-GRPC';
  core: Feature[];
  extended: Feature[];
}

/** conformance/utils/suite/profiles.go MeshHTTPConformanceProfile and MeshGRPCConformanceProfile. */
export const PROFILES: Profile[] = [
  { name: 'MESH-HTTP', core: ['Mesh', 'HTTPRoute'], extended: MESH_EXTENDED },
  { name: 'MESH-GRPC', core: ['Mesh', 'GRPCRoute'], extended: MESH_EXTENDED },
];

/** The features ambit claims: the tests needing only these run. */
export const SUPPORTED_FEATURES: ReadonlySet<Feature> = new Set<Feature>([
  'Mesh',
  'HTTPRoute',
  'GRPCRoute',
  ...MESH_EXTENDED,
  'HTTPRouteResponseHeaderModification',
  'HTTPRouteParentRefPort',
  'HTTPRoute303RedirectStatusCode',
  'HTTPRoute307RedirectStatusCode',
  'HTTPRoute308RedirectStatusCode',
]);

export type Outcome = 'passed' | 'failed' | 'skipped';

export interface TestResult {
  test: MeshTest;
  outcome: Outcome;
}

interface Stats {
  Failed: number;
  Passed: number;
  Skipped: number;
}
interface Status {
  result: 'success' | 'partial' | 'failure';
  statistics: Stats;
  failedTests?: string[];
  skippedTests?: string[];
}

export function isSupported(test: MeshTest): boolean {
  return test.features.every((f) => SUPPORTED_FEATURES.has(f));
}

/** Who ran it; the project has no public URL yet, so these come from the environment when set. */
export interface Implementation {
  organization: string;
  project: string;
  url: string;
  version: string;
  contact: string[];
}

export function buildReport(
  results: TestResult[],
  implementation: Implementation,
  date = new Date(),
): Record<string, unknown> {
  const sorted = [...results].sort((a, b) => a.test.shortName.localeCompare(b.test.shortName));
  const profiles = PROFILES.map((p) => profileReport(p, sorted)).filter((p) => p !== undefined);
  const provisional = sorted
    .filter((r) => r.outcome === 'passed' && r.test.provisional)
    .map((r) => r.test.shortName);
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'ConformanceReport',
    date: date.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    gatewayAPIChannel: GATEWAY_API_CHANNEL,
    gatewayAPIVersion: GATEWAY_API_VERSION,
    implementation,
    mode: 'default',
    profiles,
    ...(provisional.length ? { succeededProvisionalTests: provisional } : {}),
  };
}

function profileReport(p: Profile, results: TestResult[]): Record<string, unknown> | undefined {
  const inProfile = results.filter(
    (r) => isSupported(r.test) && r.test.features.every((f) => p.core.includes(f) || p.extended.includes(f)),
  );
  if (inProfile.length === 0) return undefined;
  const isExtended = (t: MeshTest) => t.features.some((f) => !p.core.includes(f));
  const core = status(inProfile.filter((r) => !isExtended(r.test)));
  const extendedResults = inProfile.filter((r) => isExtended(r.test));
  const out: Record<string, unknown> = { core };
  if (extendedResults.length) {
    const supported = p.extended.filter((f) => SUPPORTED_FEATURES.has(f)).sort();
    const unsupported = p.extended.filter((f) => !SUPPORTED_FEATURES.has(f)).sort();
    out.extended = {
      ...status(extendedResults),
      ...(supported.length ? { supportedFeatures: supported } : {}),
      ...(unsupported.length ? { unsupportedFeatures: unsupported } : {}),
    };
  }
  out.name = p.name;
  out.summary = summary(core, extendedResults.length ? (out.extended as Status) : undefined);
  return out;
}

function status(rs: TestResult[]): Status {
  const count = (o: Outcome) => rs.filter((r) => r.outcome === o).length;
  const statistics = { Failed: count('failed'), Passed: count('passed'), Skipped: count('skipped') };
  const result = statistics.Failed > 0 ? 'failure' : statistics.Skipped > 0 ? 'partial' : 'success';
  const failed = rs.filter((r) => r.outcome === 'failed').map((r) => r.test.shortName);
  const skipped = rs.filter((r) => r.outcome === 'skipped').map((r) => r.test.shortName);
  return {
    result,
    statistics,
    ...(failed.length ? { failedTests: failed } : {}),
    ...(skipped.length ? { skippedTests: skipped } : {}),
  };
}

function summary(core: Status, extended?: Status): string {
  const one = (s: Status) =>
    s.result === 'success'
      ? 'succeeded'
      : s.result === 'partial'
        ? `partially succeeded with ${s.statistics.Skipped} test skips`
        : `failed with ${s.statistics.Failed} test failures`;
  return `Core tests ${one(core)}${extended ? `. Extended tests ${one(extended)}` : ''}.`;
}

/** conformance/reports/<gatewayAPIVersion>/ambit-<version>-report.yaml under `root`. */
export function reportPath(root: string, version: string): string {
  return path.join(root, 'conformance', 'reports', GATEWAY_API_VERSION, `ambit-${version}-report.yaml`);
}

export function writeReport(file: string, report: Record<string, unknown>): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const doc = new Document(report, { sortMapEntries: true });
  // Quoted as in the suite's published reports: a YAML 1.1 reader would take an unquoted date for
  // a timestamp, and a version such as 1.30 for a number.
  for (const at of [['date'], ['implementation', 'version']]) {
    const node = doc.getIn(at, true);
    if (isScalar(node)) node.type = 'QUOTE_DOUBLE';
  }
  writeFileSync(file, doc.toString());
}
