// A minimal zip reader (a .vsix is a zip): the central directory's entries, and an entry's bytes
// (stored or deflated). No zip64, no encryption: vsce writes neither for packages of this size.
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

export class Zip {
  readonly entries: ZipEntry[] = [];
  private readonly byName = new Map<string, ZipEntry>();
  readonly buf: Buffer;

  constructor(readonly file: string) {
    this.buf = fs.readFileSync(file);
    const b = this.buf;
    // End of central directory: 22 bytes + up to 65535 bytes of comment, at the end.
    let eocd = -1;
    for (let i = b.length - 22; i >= Math.max(0, b.length - 22 - 0xffff); i--) {
      if (b.readUInt32LE(i) === 0x06054b50) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw new Error(`${file}: not a zip (no end of central directory)`);
    const count = b.readUInt16LE(eocd + 10);
    let p = b.readUInt32LE(eocd + 16);
    if (count === 0xffff || p === 0xffffffff) throw new Error(`${file}: zip64 is not supported here`);
    for (let n = 0; n < count; n++) {
      if (b.readUInt32LE(p) !== 0x02014b50) throw new Error(`${file}: bad central directory entry ${n}`);
      const nameLen = b.readUInt16LE(p + 28);
      const extraLen = b.readUInt16LE(p + 30);
      const commentLen = b.readUInt16LE(p + 32);
      const e: ZipEntry = {
        method: b.readUInt16LE(p + 10),
        compressedSize: b.readUInt32LE(p + 20),
        size: b.readUInt32LE(p + 24),
        localOffset: b.readUInt32LE(p + 42),
        name: b.toString('utf8', p + 46, p + 46 + nameLen),
      };
      this.entries.push(e);
      this.byName.set(e.name, e);
      p += 46 + nameLen + extraLen + commentLen;
    }
  }

  get names(): string[] {
    return this.entries.map((e) => e.name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  read(name: string): Buffer {
    const e = this.byName.get(name);
    if (!e) throw new Error(`${this.file}: no entry ${name}`);
    const b = this.buf;
    const h = e.localOffset;
    if (b.readUInt32LE(h) !== 0x04034b50) throw new Error(`${this.file}: bad local header for ${name}`);
    const start = h + 30 + b.readUInt16LE(h + 26) + b.readUInt16LE(h + 28);
    const data = b.subarray(start, start + e.compressedSize);
    if (e.method === 0) return Buffer.from(data);
    if (e.method === 8) return zlib.inflateRawSync(data);
    throw new Error(`${this.file}: ${name} uses compression method ${e.method}`);
  }

  text(name: string): string {
    return this.read(name).toString('utf8');
  }
}
