/**
 * The pure rules of the credential kinds: the Auth Token guard, the planner and batches leaving an
 * Auth Token alone unless its policy allows it, the policy field's validation, the stored shape of
 * an Auth Token, and webhook validation with the current and previous token.
 */
import { describe, expect, it } from 'vitest';
import twilio from 'twilio';
import { authTokenRefusal } from '../../src/domain/auth-token.ts';
import { checkPolicy, compilePolicy } from '../../src/domain/policy.ts';
import { scheduleOf } from '../../src/domain/schedule.ts';
import { notRotatable, parseBatchRequest, selectCredentials } from '../../src/domain/batch.ts';
import { authTokenCredential, credentialFromObject, isAuthTokenId, plainCredential, Secret, serializeCredential } from '../../src/domain/secret.ts';
import { validateTwilioRequest, webhookTokens } from '../../src/client/webhook.ts';
import { samePolicy, verifyingRead } from '../../src/twilio/kinds.ts';

const SID = `AC${'a'.repeat(32)}`;

describe('the Auth Token guard', () => {
  const base = { kind: 'auth-token' as const, accountSid: SID, enabled: true, admin: true, confirm: SID };
  it('lets a confirmed admin start one on an enabled account, and never applies to other kinds', () => {
    expect(authTokenRefusal({ ...base, trigger: 'api' })).toBeUndefined();
    expect(authTokenRefusal({ ...base, kind: 'api-key', enabled: false, trigger: 'schedule' })).toBeUndefined();
  });
  it('refuses, saying why: not enabled, not an admin, no or a wrong confirmation', () => {
    expect(authTokenRefusal({ ...base, trigger: 'api', enabled: false })).toMatchObject({ status: 409, code: 'auth_token_rotation_disabled' });
    expect(authTokenRefusal({ ...base, trigger: 'api', admin: false })).toMatchObject({ status: 403, message: expect.stringContaining('admin role') });
    expect(authTokenRefusal({ ...base, trigger: 'api', confirm: undefined })).toMatchObject({ status: 400, code: 'confirmation_required' });
    expect(authTokenRefusal({ ...base, trigger: 'api', confirm: `AC${'b'.repeat(32)}` })).toMatchObject({ code: 'confirmation_required' });
    // A dry run changes nothing: no confirmation needed.
    expect(authTokenRefusal({ ...base, trigger: 'api', confirm: undefined, dryRun: true })).toBeUndefined();
  });
  it('a schedule or a batch only where the policy allows it; the demo never', () => {
    for (const trigger of ['schedule', 'batch'] as const) {
      expect(authTokenRefusal({ ...base, trigger, admin: false, confirm: undefined })).toMatchObject({ code: 'auth_token_not_scheduled' });
      expect(authTokenRefusal({ ...base, trigger, admin: false, confirm: undefined, policyAllows: true })).toBeUndefined();
      expect(authTokenRefusal({ ...base, trigger, enabled: false, policyAllows: true })).toMatchObject({ code: 'auth_token_rotation_disabled' });
    }
    expect(authTokenRefusal({ ...base, trigger: 'demo', policyAllows: true })).toMatchObject({ code: 'auth_token_not_scheduled' });
  });
});

describe('policies, planner and batches know the kind', () => {
  const quarterly = compilePolicy({ name: 'quarterly-tokens', interval: 'P90D' });
  const allowing = compilePolicy({ name: 'token-rotation', interval: 'P90D', allowAuthToken: true });
  const subject = { id: `${SID}/default`, paused: null, subaccountStatus: 'active', firstSeenMs: 0, lastRotatedMs: 0, keyCreatedMs: null, currentKeySid: 'x', lastRotation: null };

  it('validates allowAuthToken: a boolean, not on the default policy, not with exclude or autoRotate false', () => {
    const fields = (input: unknown) => {
      const r = checkPolicy(input);
      return r.ok ? [] : r.errors.map((e) => e.path);
    };
    expect(fields({ name: 'x', interval: 'P90D', allowAuthToken: 'yes' })).toContain('allowAuthToken');
    expect(fields({ name: 'default', interval: 'P90D', allowAuthToken: true })).toContain('allowAuthToken');
    expect(fields({ name: 'x', interval: 'P90D', allowAuthToken: true, autoRotate: false })).toContain('allowAuthToken');
    expect(fields({ name: 'x', interval: 'P90D', allowAuthToken: true })).toEqual([]);
    expect(quarterly.allowAuthToken).toBe(false);
  });

  it('the planner never schedules an Auth Token unless its policy allows it', () => {
    const opts = { retryAfterFailureMs: 3_600_000 };
    expect(scheduleOf({ ...subject, kind: 'auth-token', policy: quarterly }, opts)).toEqual({ scheduled: false, why: 'auth token not allowed by policy' });
    expect(scheduleOf({ ...subject, kind: 'auth-token', policy: allowing }, opts).scheduled).toBe(true);
    expect(scheduleOf({ ...subject, kind: 'restricted-key', policy: quarterly }, opts).scheduled).toBe(true);
  });

  it('a batch leaves an Auth Token out unless its policy allows it, and may filter by kind', () => {
    const cred = (name: string, kind: 'api-key' | 'restricted-key' | 'auth-token', allowAuthToken = false) => ({ accountSid: SID, name, labels: [], subaccountStatus: 'active', kind, allowAuthToken });
    expect(notRotatable(cred('t', 'auth-token'))).toBe('auth token not allowed by policy');
    expect(notRotatable(cred('t', 'auth-token', true))).toBeNull();
    const fleet = [cred('a', 'api-key'), cred('r', 'restricted-key'), cred('t', 'auth-token')];
    const all = selectCredentials('all', fleet);
    expect(all.ok && all.value).toMatchObject({ ids: [`${SID}/a`, `${SID}/r`], leftOut: { 'auth token not allowed by policy': 1 } });
    const onlyRestricted = selectCredentials('all', fleet, ['restricted-key']);
    expect(onlyRestricted.ok && onlyRestricted.value.ids).toEqual([`${SID}/r`]);
    const bad = parseBatchRequest({ selector: 'all', kinds: ['api-key', 'token'], reason: 'r', waves: { canary: 1, step: 50, bakeSeconds: 0 }, maxFailureRate: 0 });
    expect(bad.ok ? [] : bad.errors.map((e) => e.path)).toEqual(['kinds[1]']);
  });
});

describe('stored shapes', () => {
  it('an Auth Token is stored as {accountSid, authToken} and read back with its fingerprint as id', () => {
    const c = authTokenCredential(SID, new Secret('f'.repeat(32)));
    expect(isAuthTokenId(c.apiKeySid)).toBe(true);
    expect(c.apiKeySid).toMatch(/^AT-[0-9a-f]{16}$/);
    expect(JSON.parse(serializeCredential(c))).toEqual({ accountSid: SID, authToken: 'f'.repeat(32) });
    const back = credentialFromObject(plainCredential(c));
    expect(back.apiKeySid).toBe(c.apiKeySid);
    expect(back.apiKeySecret.reveal()).toBe('f'.repeat(32));
    // The fingerprint does not contain the token.
    expect(c.apiKeySid).not.toContain('ffff');
  });
  it('restricted-key policies compare as canonical JSON; a verifying read is picked from the policy', () => {
    expect(samePolicy({ allow: ['/a', '/b'], x: { p: 1, q: 2 } }, { x: { q: 2, p: 1 }, allow: ['/a', '/b'] })).toBe(true);
    expect(samePolicy({ allow: ['/a', '/b'] }, { allow: ['/b', '/a'] })).toBe(false);
    expect(verifyingRead({ allow: ['/twilio/voice/calls/read', '/twilio/usage/balance/read'] })).toBe('/twilio/usage/balance/read');
    expect(verifyingRead({ allow: ['/twilio/voice/calls/read'] })).toBeUndefined();
  });
});

describe('validateTwilioRequest', () => {
  const url = 'https://app.example.com/hooks/sms?x=1';
  const params = { From: '+15005550006', Body: 'hi' };
  it('accepts the current token, and the previous one only while the store has it', () => {
    const tokens = webhookTokens({ current: { accountSid: SID, authToken: 'new-token' }, previous: { accountSid: SID, authToken: 'old-token' } });
    expect(validateTwilioRequest(tokens, { url, params, signature: twilio.getExpectedTwilioSignature('new-token', url, params) })).toEqual({ valid: true, signedWith: 'current' });
    expect(validateTwilioRequest(tokens, { url, params, signature: twilio.getExpectedTwilioSignature('old-token', url, params) })).toEqual({ valid: true, signedWith: 'previous' });
    expect(validateTwilioRequest({ current: 'new-token' }, { url, params, signature: twilio.getExpectedTwilioSignature('old-token', url, params) })).toMatchObject({ valid: false });
    expect(validateTwilioRequest(tokens, { url, params, signature: undefined })).toEqual({ valid: false, reason: 'no X-Twilio-Signature header' });
    // A tampered parameter fails with either token.
    expect(validateTwilioRequest(tokens, { url, params: { ...params, Body: 'HI' }, signature: twilio.getExpectedTwilioSignature('old-token', url, params) }).valid).toBe(false);
  });
  it('validates JSON bodies through bodySHA256', async () => {
    const { createHash } = await import('node:crypto');
    const body = JSON.stringify({ event: 'x' });
    const hashed = `https://app.example.com/hooks/json?bodySHA256=${createHash('sha256').update(body).digest('hex')}`;
    const signature = twilio.getExpectedTwilioSignature('old-token', hashed, {});
    expect(validateTwilioRequest({ current: 'new-token', previous: 'old-token' }, { url: hashed, body, signature })).toEqual({ valid: true, signedWith: 'previous' });
    expect(validateTwilioRequest({ current: 'new-token', previous: 'old-token' }, { url: hashed, body: body + ' ', signature }).valid).toBe(false);
  });
});
