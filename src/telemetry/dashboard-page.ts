// The service graph page served at the control plane's 15014 /dashboard. Self-contained (no
// external scripts, works offline): polls /debug/graph every REFRESH_MS and draws workloads as
// nodes on a circle, edges with connections/s, requests/s, error rate and bytes/s, a lock when
// the traffic is mutual TLS, and a table of recent denials with their policies. Elements carry
// data-* attributes so a headless browser test can find edges.
// The page holds no mesh data; /debug/graph needs the admin token. `ambit dashboard` prints the
// URL with the token in the fragment (#token=…), which browsers never send to a server or put in
// a Referer; the page moves it to sessionStorage, drops it from the address bar, and sends it as
// Authorization: Bearer on its same-origin fetches.
export const REFRESH_MS = 3000;

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ambit — service graph</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 0; color: #1d2733; background: #f6f8fa; }
  header { padding: 10px 16px; background: #1d2733; color: #fff; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 16px; margin: 0; }
  #status { font-size: 12px; opacity: .8; }
  main { display: grid; grid-template-columns: minmax(500px, 2fr) 1fr; gap: 12px; padding: 12px; }
  section { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px; }
  h2 { font-size: 13px; margin: 4px 0 8px; text-transform: uppercase; letter-spacing: .04em; color: #57606a; }
  svg { width: 100%; height: 560px; }
  .node circle { fill: #dbeafe; stroke: #1d4ed8; stroke-width: 1.5; }
  .node.outside circle { fill: #f3f4f6; stroke: #6b7280; stroke-dasharray: 3 2; }
  .node text { font-size: 12px; text-anchor: middle; }
  .edge line { stroke: #2563eb; stroke-width: 2; marker-end: url(#arrow); }
  .edge.errors line { stroke: #dc2626; }
  .edge.plain line { stroke-dasharray: 6 4; }
  .edge text { font-size: 11px; fill: #374151; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
  .lock rect { fill: #15803d; } .lock path { fill: none; stroke: #15803d; stroke-width: 1.6; }
  .tag { font-size: 11px; color: #15803d; font-weight: 600; }
  table { border-collapse: collapse; width: 100%; font-size: 12px; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
  .muted { color: #6b7280; }
</style>
</head>
<body>
<header><h1>ambit service graph</h1><span id="status">loading…</span></header>
<main>
  <section><h2>Traffic</h2>
    <svg id="graph" viewBox="0 0 800 560" role="img" aria-label="service graph">
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
        <path d="M 0 0 L 10 5 L 0 10 z" fill="#2563eb"/></marker></defs>
      <g id="edges"></g><g id="nodes"></g>
    </svg>
  </section>
  <section><h2>Edges</h2><table id="edge-table"><thead><tr><th>from → to</th><th>conn/s</th><th>req/s</th><th>err</th><th>bytes/s</th><th>total</th><th></th></tr></thead><tbody></tbody></table>
    <h2 style="margin-top:16px">Recent denials</h2><table id="denials"><thead><tr><th>time</th><th>from</th><th>to</th><th>policy</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script>
const REFRESH_MS = ${REFRESH_MS};
const NS = 'http://www.w3.org/2000/svg';
const el = (tag, attrs = {}, text) => {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const fmtBytes = (n) => n >= 1048576 ? (n / 1048576).toFixed(1) + ' MB' : n >= 1024 ? (n / 1024).toFixed(1) + ' KB' : Math.round(n) + ' B';
const fmtRate = (n) => n >= 10 ? n.toFixed(0) : n.toFixed(1);
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

function draw(g) {
  const nodes = g.nodes, pos = new Map();
  const cx = 400, cy = 280, r = Math.min(230, 60 + nodes.length * 25);
  nodes.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, nodes.length) - Math.PI / 2;
    pos.set(n.id, { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a) });
  });
  const edgesG = document.getElementById('edges'), nodesG = document.getElementById('nodes');
  edgesG.replaceChildren(); nodesG.replaceChildren();
  for (const e of g.edges) {
    const a = pos.get(e.source), b = pos.get(e.destination);
    if (!a || !b) continue;
    const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1, k = 34 / len;
    const grp = el('g', { class: 'edge' + (e.errorRate > 0 ? ' errors' : '') + (e.mtls ? '' : ' plain'),
      'data-source': e.source, 'data-destination': e.destination, 'data-mtls': String(e.mtls) });
    grp.append(el('line', { x1: a.x + dx * k, y1: a.y + dy * k, x2: b.x - dx * k, y2: b.y - dy * k }));
    // Rates need two scrapes; until then the totals say that traffic happened.
    const rate = e.requests ? e.requestsPerSecond : e.connectionsPerSecond;
    const label = (rate > 0 || g.intervalSeconds > 0
      ? fmtRate(rate) + (e.requests ? ' req/s' : ' conn/s') + ' · ' + fmtBytes(e.bytesPerSecond) + '/s'
      : (e.requests || e.connectionsOpened) + (e.requests ? ' req' : ' conn') + ' · ' + fmtBytes(e.bytes)) +
      ' · ' + (e.errorRate * 100).toFixed(0) + '% err';
    const mx = (a.x + b.x) / 2, my = (a.y + b.y) / 2 - 6;
    grp.append(el('text', { x: mx, y: my, 'text-anchor': 'middle' }, label));
    if (e.mtls) {
      // A drawn lock: emoji fonts are not everywhere (headless browsers, servers).
      const lock = el('g', { class: 'lock', transform: 'translate(' + (mx - 5) + ',' + (my - 26) + ')' });
      lock.append(el('title', {}, 'mutual TLS'));
      lock.append(el('path', { d: 'M2.5 6 V3.5 a2.5 2.5 0 0 1 5 0 V6' }));
      lock.append(el('rect', { x: 0, y: 6, width: 10, height: 8, rx: 1.5 }));
      grp.append(lock);
    }
    edgesG.append(grp);
  }
  for (const n of nodes) {
    const p = pos.get(n.id);
    const grp = el('g', { class: 'node' + (n.namespace === 'unknown' ? ' outside' : ''), 'data-id': n.id });
    grp.append(el('circle', { cx: p.x, cy: p.y, r: 30 }));
    grp.append(el('text', { x: p.x, y: p.y + 4 }, n.workload));
    grp.append(el('text', { x: p.x, y: p.y + 46, class: 'muted' }, n.namespace));
    nodesG.append(grp);
  }
  document.querySelector('#edge-table tbody').innerHTML = g.edges.map((e) =>
    '<tr data-source="' + esc(e.source) + '" data-destination="' + esc(e.destination) + '"><td>' + esc(e.source) + ' → ' + esc(e.destination) +
    '<div class="muted">' + esc(e.service) + '</div></td><td>' + fmtRate(e.connectionsPerSecond) + '</td><td>' + fmtRate(e.requestsPerSecond) +
    '</td><td>' + (e.errorRate * 100).toFixed(0) + '%</td><td>' + fmtBytes(e.bytesPerSecond) + '</td><td>' + (e.requests || e.connectionsOpened) +
    (e.denied ? ' (' + e.denied + ' denied)' : '') + '</td><td>' + (e.mtls ? '<span class="tag" title="mutual TLS">mTLS</span>' : '') + '</td></tr>').join('');
  document.querySelector('#denials tbody').innerHTML = g.denials.slice().reverse().map((d) =>
    '<tr><td>' + esc(d.time.slice(11, 19)) + '</td><td>' + esc(d.srcIdentity || d.srcIp) + '</td><td>' + esc(d.dstNamespace + '/' + d.dstWorkload + ':' + d.dstPort) +
    '</td><td>' + esc(d.policy || '(no ALLOW matched)') + '<div class="muted">' + esc(d.reason) + '</div></td></tr>').join('') ||
    '<tr><td colspan="4" class="muted">none</td></tr>';
  const errs = g.scrapeErrors.length ? ' · ' + g.scrapeErrors.length + ' proxies unreachable' : '';
  document.getElementById('status').textContent = 'updated ' + g.time.slice(11, 19) + ' · ' + g.nodes.length + ' workloads · ' + g.edges.length + ' edges' + errs;
  document.body.dataset.updated = g.time;
}

const TOKEN = (() => {
  const m = /(?:^#|&)token=([0-9A-Za-z._~-]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('ambit-admin-token', m[1]);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem('ambit-admin-token') || '';
})();

async function refresh() {
  try {
    const r = await fetch('/debug/graph', {
      cache: 'no-store',
      headers: TOKEN ? { authorization: 'Bearer ' + TOKEN } : {},
    });
    if (r.status === 401 || r.status === 403) {
      document.getElementById('status').textContent =
        'the control plane refused: ' + (await r.text()).trim() + ' (open the URL that ambit dashboard prints)';
      return void setTimeout(refresh, REFRESH_MS);
    }
    draw(await r.json());
  } catch (err) {
    document.getElementById('status').textContent = 'cannot reach the control plane: ' + err;
  }
  setTimeout(refresh, REFRESH_MS);
}
refresh();
</script>
</body>
</html>
`;
