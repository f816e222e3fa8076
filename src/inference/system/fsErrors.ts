// A failed write, in words a user can act on: Node's "ENOSPC: no space left on device, write" (and
// its stack) says neither which folder nor what to do.

/** A Node file-system error: it has an errno code such as ENOSPC. */
export function isFsError(e: unknown): e is NodeJS.ErrnoException & { code: string } {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && /^E[A-Z]+$/.test((e as NodeJS.ErrnoException).code!);
}

const REASONS: Record<string, string> = {
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is used up',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  // mkdir under a path whose parent is a file, or where a file already holds the folder's name.
  ENOTDIR: 'a file is in the way (where a folder should be)',
  EEXIST: 'a file is in the way (where a folder should be)',
  ENOENT: 'its folder is gone or cannot be created',
  EIO: 'an input/output error (a failing disk or a lost network share)',
};

/** Why a write failed, in words (the errno code in brackets for a search); the message for other errors. */
export function writeFailureReason(e: unknown): string {
  if (!isFsError(e)) return e instanceof Error ? e.message : String(e);
  const words = REASONS[e.code];
  return words ? `${words} (${e.code})` : e.message;
}

/**
 * The message for an image generated but not saved (minutes of work): why, that nothing partial is
 * left, then `fix`: where to write instead and the seed that makes the same image, in the caller's terms.
 */
export function imageNotSavedMessage(file: string, e: unknown, fix: string): string {
  return `could not save the image to ${file}: ${writeFailureReason(e)} (no partial file is left). ${fix}`;
}
