// Preloaded into every mesh process of the soak (`node --import bench/soak-probe.mjs`, through
// AMBIT_NODE_ARGS): every 5 s writes this process's heap (now, and its floor: the lowest of the
// last 60 one-second readings, which is near the live heap after GC and so the figure a leak
// moves; a single reading swings by half with GC timing) and its count of active handles to
// $AMBIT_SOAK_PROBE_DIR/<pid>.json, so the soak can sample what /proc cannot show (RSS comes
// from /proc). Nothing is loaded into ambit itself for it; without the variable it does nothing.
import fs from 'node:fs';
import path from 'node:path';

const dir = process.env.AMBIT_SOAK_PROBE_DIR;
if (dir) {
  const file = path.join(dir, `${process.pid}.json`);
  const readings = [];
  setInterval(() => {
    readings.push(process.memoryUsage().heapUsed);
    if (readings.length > 60) readings.shift();
  }, 1000).unref();
  const write = () => {
    const m = process.memoryUsage();
    const resources = process.getActiveResourcesInfo();
    const sample = {
      at: Date.now(),
      heapUsed: m.heapUsed,
      heapFloor: Math.min(m.heapUsed, ...readings),
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      handles: resources.filter((r) => r !== 'Timeout' && r !== 'Immediate').length,
    };
    try {
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(sample));
      fs.renameSync(`${file}.tmp`, file);
    } catch {
      // the soak's folder is gone: it has ended
    }
  };
  setInterval(write, 5000).unref();
  setTimeout(write, 500).unref();
}
