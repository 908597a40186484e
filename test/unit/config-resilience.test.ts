import { describe, expect, it } from 'vitest';
import { loadConfig, type ConfigError } from '../../src/config.ts';

const base = { TWILIO_ACCOUNT_SID: `AC${'0'.repeat(32)}`, TWILIO_AUTH_TOKEN: 'token-0123456789' };
const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig({ ...base, ...env });
    return [];
  } catch (err) {
    return (err as ConfigError).problems;
  }
};

/** Issue 18's settings: notifications, audit retention, shutdown. Each mistake is named with what to set. */
describe('configuration of notifications, audit retention and shutdown', () => {
  it('defaults: no sink, every event type, retention keeps everything, no shutdown delay', () => {
    const cfg = loadConfig(base);
    expect(cfg.notify).toMatchObject({ events: ['rotation.failed', 'rotation.held', 'batch.halted', 'credential.overdue', 'planner.stalled'], maxAttempts: 10, backoffMs: 5_000 });
    expect(cfg.notify.slackUrl).toBeUndefined();
    expect(cfg.notify.webhook).toBeUndefined();
    expect(cfg.auditRetention.days).toBe(0);
    expect({ delay: cfg.shutdownDelayMs, timeout: cfg.shutdownTimeoutMs }).toEqual({ delay: 0, timeout: 30_000 });
  });

  it('sinks: https (or http to localhost), a webhook secret of 16+ characters, known event names', () => {
    expect(problems({ NOTIFY_SLACK_WEBHOOK_URL: 'http://hooks.example.com/services/x' })).toEqual([expect.stringMatching(/^NOTIFY_SLACK_WEBHOOK_URL must be an https URL/)]);
    expect(problems({ NOTIFY_WEBHOOK_URL: 'https://ops.example.com/hook' })).toEqual([expect.stringMatching(/^NOTIFY_WEBHOOK_SECRET is required with NOTIFY_WEBHOOK_URL/)]);
    expect(problems({ NOTIFY_WEBHOOK_URL: 'https://ops.example.com/hook', NOTIFY_WEBHOOK_SECRET: 'short' })).toEqual([expect.stringMatching(/^NOTIFY_WEBHOOK_SECRET must be at least 16/)]);
    expect(problems({ NOTIFY_WEBHOOK_SECRET: 'x'.repeat(20) })).toEqual([expect.stringMatching(/without NOTIFY_WEBHOOK_URL/)]);
    expect(problems({ NOTIFY_EVENTS: 'rotation.failed,rotation.exploded' })).toEqual([expect.stringMatching(/NOTIFY_EVENTS entry "rotation.exploded" must be all or one of/)]);
    const cfg = loadConfig({ ...base, NOTIFY_SLACK_WEBHOOK_URL: 'https://hooks.slack.com/services/T/B/secretpart', NOTIFY_WEBHOOK_URL: 'http://127.0.0.1:9000/h', NOTIFY_WEBHOOK_SECRET: 'y'.repeat(32), NOTIFY_EVENTS: 'batch.halted, rotation.failed' });
    expect(cfg.notify.events).toEqual(['batch.halted', 'rotation.failed']);
    // The Slack URL is a credential: it never prints.
    expect(JSON.stringify(cfg.notify)).not.toContain('secretpart');
    expect(JSON.stringify(cfg.notify)).not.toContain('y'.repeat(32));
  });

  it('retention needs an export destination and a checkpoint key of 32+ characters', () => {
    expect(problems({ AUDIT_RETENTION_DAYS: '90' })).toEqual([expect.stringMatching(/^AUDIT_EXPORT_DIR is required/), expect.stringMatching(/^AUDIT_CHECKPOINT_KEY is required/)]);
    expect(problems({ AUDIT_RETENTION_DAYS: '90', AUDIT_EXPORT_DIR: '-', AUDIT_CHECKPOINT_KEY: 'short' })).toEqual([expect.stringMatching(/^AUDIT_CHECKPOINT_KEY must be at least 32/)]);
    const cfg = loadConfig({ ...base, AUDIT_RETENTION_DAYS: '90', AUDIT_EXPORT_DIR: '-', AUDIT_CHECKPOINT_KEY: 'z'.repeat(40) });
    expect(cfg.auditRetention).toMatchObject({ days: 90, exportTo: '-' });
    expect(JSON.stringify(cfg.auditRetention)).not.toContain('z'.repeat(40));
  });
});
