// Drops symbol-version requirements from an ELF64 little-endian shared object (the Jazzer.js addon
// copy made by scripts/fuzz.mjs; see fuzz/README.md). For each version named (e.g. GLIBC_2.38):
// - the symbols given for it get version index 1 in .gnu.version (an unversioned reference, as
//   `patchelf --clear-symbol-version` does), so they bind to the first definition in scope (the
//   LD_PRELOADed shim built from isoc23.c);
// - its vernaux entry is unlinked from .gnu.version_r, so the loader no longer demands it.
// It refuses (throws) when the file is not what it expects, or when a symbol not named also needs
// that version: such a symbol would be left without its meaning, so nothing is patched.
const SHT_DYNSYM = 11;
const SHT_GNU_VERNEED = 0x6ffffffe;
const SHT_GNU_VERSYM = 0x6fffffff;

/** @param {Buffer} input @param {Record<string, string[]>} drop  @returns {{ out: Buffer, changed: string[] }} */
export function dropVersions(input, drop) {
  const b = Buffer.from(input);
  if (b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1)
    throw new Error('not a 64-bit little-endian ELF file');
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * shentsize;
    sections.push({
      type: b.readUInt32LE(o + 4),
      offset: Number(b.readBigUInt64LE(o + 0x18)),
      size: Number(b.readBigUInt64LE(o + 0x20)),
      link: b.readUInt32LE(o + 0x28),
      info: b.readUInt32LE(o + 0x2c),
      entsize: Number(b.readBigUInt64LE(o + 0x38)),
    });
  }
  const one = (type, what) => {
    const s = sections.filter((x) => x.type === type);
    if (s.length !== 1) throw new Error(`expected one ${what} section, found ${s.length}`);
    return s[0];
  };
  const dynsym = one(SHT_DYNSYM, '.dynsym');
  const versym = one(SHT_GNU_VERSYM, '.gnu.version');
  const verneed = one(SHT_GNU_VERNEED, '.gnu.version_r');
  const cstr = (sec, at) => {
    const start = sec.offset + at;
    return b.toString('latin1', start, b.indexOf(0, start));
  };
  const dynstr = sections[dynsym.link];
  const needStr = sections[verneed.link];

  // version name -> index, unlinking its vernaux entry
  const changed = [];
  const indexOf = new Map();
  let vn = verneed.offset;
  for (let n = 0; n < verneed.info; n++) {
    const file = cstr(needStr, b.readUInt32LE(vn + 4));
    let prev = -1;
    let aux = vn + b.readUInt32LE(vn + 8);
    for (let k = b.readUInt16LE(vn + 2); k > 0; k--) {
      const name = cstr(needStr, b.readUInt32LE(aux + 8));
      const next = b.readUInt32LE(aux + 12);
      if (name in drop) {
        const cnt = b.readUInt16LE(vn + 2);
        if (cnt === 1) throw new Error(`${name} is the only version needed from ${file}`);
        indexOf.set(name, b.readUInt16LE(aux + 6) & 0x7fff);
        if (prev < 0)
          b.writeUInt32LE(b.readUInt32LE(vn + 8) + next, vn + 8); // first: vn_aux skips it
        else b.writeUInt32LE(next ? b.readUInt32LE(prev + 12) + next : 0, prev + 12);
        b.writeUInt16LE(cnt - 1, vn + 2);
        changed.push(`${file}: no longer requires ${name}`);
      } else prev = aux;
      if (!next) break;
      aux += next;
    }
    const vnNext = b.readUInt32LE(vn + 12);
    if (!vnNext) break;
    vn += vnNext;
  }
  for (const name of Object.keys(drop))
    if (!indexOf.has(name)) throw new Error(`the file does not require version ${name}`);

  // every symbol with a dropped version index must be one we were told about
  const count = dynsym.size / dynsym.entsize;
  for (let i = 0; i < count; i++) {
    const at = versym.offset + i * 2;
    const ndx = b.readUInt16LE(at) & 0x7fff;
    const version = [...indexOf].find(([, x]) => x === ndx)?.[0];
    if (!version) continue;
    const sym = cstr(dynstr, b.readUInt32LE(dynsym.offset + i * dynsym.entsize));
    if (!drop[version].includes(sym))
      throw new Error(`${sym} also needs ${version}: not patched (its meaning would change)`);
    b.writeUInt16LE(1, at);
    changed.push(`${sym}: version ${version} cleared`);
  }
  return { out: b, changed };
}
