// Istio standard labels that the node proxy's L4 metrics and the waypoint's request metrics both
// report, for telemetry tests to expect.

/** sleep (demo) → echo-v1 behind `echo.demo`, over mutual TLS, nothing gone wrong. */
export const SLEEP_TO_ECHO_LABELS = {
  source_workload: 'sleep',
  source_app: 'sleep',
  source_principal: 'spiffe://cluster.local/ns/demo/sa/sleep',
  destination_workload: 'echo-v1',
  destination_app: 'echo',
  destination_version: 'v1',
  destination_service: 'echo.demo.svc.cluster.local',
  destination_service_name: 'echo',
  destination_service_namespace: 'demo',
  response_flags: '-',
  connection_security_policy: 'mutual_tls',
} as const;
