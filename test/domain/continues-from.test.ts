import { describe, expect, it } from 'vitest';
import { continuesFrom, type RotationRecord } from '../../src/domain/rotation.ts';

const at = '2026-12-08T00:00:00.000Z';
const base: RotationRecord = {
  id: 'r1', kind: 'api-key', accountSid: `AC${'1'.repeat(32)}`, credential: 'default', status: 'running', step: 'promote', dryRun: false,
  trigger: 'api', attempts: 1, createdAt: at, updatedAt: at, rev: 4, history: [{ step: 'create-secondary', status: 'created', at }],
};

/** The rule that decides whether a worker's step outcome may land on the record as stored now. */
describe('continuesFrom', () => {
  it('lets the write land over what the API may add while a step runs', () => {
    expect(continuesFrom(base, { ...base, rev: 5 })).toBe(true);
    expect(continuesFrom(base, { ...base, rev: 5, undo: { reason: 'cancel', requestedAt: at } })).toBe(true);
    expect(continuesFrom(base, { ...base, rev: 5, forcePromote: { at, lagging: [] } })).toBe(true);
    const undoing = { ...base, undo: { reason: 'rollback' as const, drain: true } };
    expect(continuesFrom(undoing, { ...undoing, rev: 5 })).toBe(true);
  });

  it('refuses it once another delivery moved the rotation on', () => {
    expect(continuesFrom(base, { ...base, step: 'delete-old' })).toBe(false);
    expect(continuesFrom(base, { ...base, status: 'succeeded' })).toBe(false);
    expect(continuesFrom(base, { ...base, status: 'failed' })).toBe(false);
    expect(continuesFrom(base, { ...base, restarts: 1 })).toBe(false);
    // An undo already a phase further: the failure's own undo decision was made by someone else.
    expect(continuesFrom(base, { ...base, undo: { reason: 'failure', drain: true } })).toBe(false);
    const undoing = { ...base, undo: { reason: 'rollback' as const, drain: true } };
    expect(continuesFrom(undoing, { ...undoing, undo: { ...undoing.undo, deleteAfter: at } })).toBe(false);
    expect(continuesFrom(undoing, { ...base })).toBe(false);
  });
});
