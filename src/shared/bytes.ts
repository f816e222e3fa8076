// How a size is written for people, everywhere one is shown (panel, model reports, CLI, logs,
// errors): binary units, as memory and most file managers count, about three significant digits.
// Pure and import-free: both the extension host and the inference side use it.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Bytes in the largest binary unit that keeps the number ≥ 1: "1023 B", "1.50 KiB", "23.8 GiB"; "?" for what is no size. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '?';
  let i = 0;
  let v = bytes;
  // Compare what will be printed, so 10 239 B is "10.0 KiB", not "10.00", and 1 048 575 B "1.00 MiB", not "1024.0 KiB".
  while (i < UNITS.length - 1 && Number(v.toFixed(1)) >= 1024) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${Math.round(v)} B`;
  return `${v.toFixed(Number(v.toFixed(2)) < 10 ? 2 : 1)} ${UNITS[i]}`;
}
