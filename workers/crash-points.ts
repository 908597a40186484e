/**
 * Test-only fault injection: the chaos and crash tests name lines (ROTATOR_CRASH_POINTS) at which
 * the worker kills itself with SIGKILL — a real process death at an exact line, not a simulated one.
 * With none configured, `crash` is a no-op.
 */
export type CrashPoint = (name: string) => void;

export function createCrashPoints(names: readonly string[], onCrash?: (name: string) => void): CrashPoint {
  if (names.length === 0) return () => undefined;
  const armed = new Set(names);
  return (name: string) => {
    if (!armed.has(name)) return;
    onCrash?.(name);
    process.stderr.write(`crash point ${name}: SIGKILL\n`);
    process.kill(process.pid, 'SIGKILL');
  };
}

/** Every named crash point, in the order a rotation passes them. */
export const CRASH_POINTS = [
  'create-secondary:start',
  'create-secondary:after-create-key',
  'create-secondary:after-store-pending',
  'create-secondary:done',
  'operationalize:start',
  'operationalize:after-store',
  'operationalize:done',
  'promote:start',
  'promote:done',
  'delete-old:start',
  'delete-old:after-twilio-delete',
  'delete-old:done',
] as const;

/**
 * Points only some credential kinds pass (workers/steps/kinds): the Auth Token's promotion at
 * Twilio, between which and the step's record a crash must not lose the promotion.
 */
export const KIND_CRASH_POINTS: Readonly<Record<string, readonly string[]>> = {
  'auth-token': ['promote:after-twilio-promote'],
};

/** Every crash point a rotation of `kind` passes. */
export function crashPointsOf(kind: string): readonly string[] {
  return [...CRASH_POINTS, ...(KIND_CRASH_POINTS[kind] ?? [])];
}
