import { RotatorError } from '../src/domain/errors.ts';
import type { StoreErrorCode } from './secret-store.ts';

export class StoreError extends RotatorError {
  constructor(code: StoreErrorCode, message: string, cause?: unknown) {
    super(code, message, { transient: code === 'store_unavailable' || code === 'store_conflict', cause });
    this.name = 'StoreError';
  }
}
