// The headless Chromium the browser tests drive (playwright-core with the system browser), or
// undefined with the reason printed: those tests then skip, saying why.
import { existsSync } from 'node:fs';

/** The first of /usr/bin/chromium, /usr/bin/chromium-browser, $CHROMIUM_PATH that exists. */
export function findChromium(whatSkips: string): string | undefined {
  const found = ['/usr/bin/chromium', '/usr/bin/chromium-browser', process.env.CHROMIUM_PATH ?? ''].find(
    (p) => p && existsSync(p),
  );
  if (!found)
    console.log(`${whatSkips} skipped: no chromium (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  return found;
}
