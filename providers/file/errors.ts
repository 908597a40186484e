import { StoreError } from '../store-error.ts';

/**
 * A file-system error of the file store → StoreError, saying what the operator should look at.
 *
 *  - EACCES (mode or owner) and EROFS (read-only mount) will not change by themselves: permanent
 *    `store_permission`.
 *  - EPERM is what Linux answers when the directory or file carries the immutable or append-only
 *    attribute (`chattr +i`, set by backup or hardening tools for a while) or the file system is
 *    frozen: the store refuses changes for now while reads still work, so it is transient
 *    `store_unavailable` and the step is retried with backoff.
 *  - ENOTDIR (a component of the path is a file) is a wrong FILE_STORE_PATH: permanent
 *    `store_config`, so start-up stops at once instead of retrying until its deadline.
 *  - Anything else (ENOSPC, EIO, EBUSY…) is transient too.
 */
export function fileStoreError(err: unknown, action: 'read' | 'write' | 'lock', dir: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'EACCES' || code === 'EROFS') {
    return new StoreError('store_permission', `no permission to ${action === 'read' ? 'read' : 'write'} the file store at ${dir} (${code}): fix its owner or mode, or mount it read-write`, err);
  }
  if (code === 'ENOTDIR') {
    return new StoreError('store_config', `the file store path ${dir} runs through a file, not a directory (ENOTDIR)`, err);
  }
  if (code === 'EPERM') {
    return new StoreError('store_unavailable', `the file store at ${dir} refuses changes for now (EPERM: an immutable or append-only attribute, or a frozen file system); retrying`, err);
  }
  return new StoreError('store_unavailable', `cannot ${action} the file store at ${dir} (${code ?? 'error'})`, err);
}
