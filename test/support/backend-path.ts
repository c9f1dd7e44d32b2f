// How a typical backend router reads a request path, for the tests that check a waypoint DENY on
// a path can never be passed by spelling it differently (the unit property test and the
// adversarial mesh test): %XX decoded except %2F and %5C, backslashes as slashes, empty and "."
// segments dropped, ".." resolved. The query, if any, is the caller's to drop first.
export function backendPathView(path: string): string {
  const decoded = path.replace(/%([0-9a-fA-F]{2})/g, (all, h: string) =>
    ['2f', '5c'].includes(h.toLowerCase()) ? all : String.fromCharCode(parseInt(h, 16)),
  );
  const out: string[] = [];
  for (const s of decoded.replace(/\\/g, '/').split('/')) {
    if (s === '' || s === '.') continue;
    if (s === '..') out.pop();
    else out.push(s);
  }
  return `/${out.join('/')}`;
}
