// An input image's size as the panel's width and height, read from the file's header (image-size:
// plain JavaScript, no decoding). Pure: no vscode import.

import { imageSize } from 'image-size';
import { LIMITS } from '../shared/params';

/** The generation size for an image of w×h: within the side limits, aspect kept, each side to the nearest multiple of 16. */
export function sizeForImage(w: number, h: number): { width: number; height: number } {
  const { min, max, multiple } = LIMITS.side;
  const scale = Math.min(1, max / Math.max(w, h));
  const side = (x: number) => Math.min(max, Math.max(min, Math.round((x * scale) / multiple) * multiple));
  return { width: side(w), height: side(h) };
}

/** The image's displayed size (EXIF orientations 5–8 turn it a quarter), or undefined when the header cannot be read. */
export function readImageSize(file: string): Promise<{ width: number; height: number } | undefined> {
  return new Promise((resolve) => {
    imageSize(file, (err, r) => {
      if (err || !r?.width || !r.height) return resolve(undefined);
      const turned = (r.orientation ?? 1) >= 5;
      resolve(turned ? { width: r.height, height: r.width } : { width: r.width, height: r.height });
    });
  });
}

/** The format image-size reads in the file's header ('jpg', 'webp', 'gif', …), whatever its name says; undefined for no image. */
export function readImageType(file: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    imageSize(file, (err, r) => resolve(err ? undefined : r?.type));
  });
}
