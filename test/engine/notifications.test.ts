import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startStack, waitFor, type Stack } from '../helpers/stack.ts';
import { PromoteHold, startEngine, startRotation, waitFinished, waitWaiting } from '../helpers/engine.ts';
import { dumpRedis, findSecrets } from '../helpers/leaks.ts';
import type { Runtime } from '../../src/runtime.ts';
import { verifyWebhookSignature } from '../../src/domain/notification.ts';
import { createNotifyQueue } from '../../workers/notify-worker.ts';

/** A real HTTP receiver that records every request and answers what `answer` says. */
interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  status: number;
}
async function receiver(answer: (n: number, body: string) => number): Promise<{ url: string; got: Received[]; close(): Promise<void> }> {
  const got: Received[] = [];
  let n = 0;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const status = answer(n++, body);
      got.push({ path: req.url ?? '', headers: req.headers, body, status });
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : 'no');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, got, close: () => new Promise((r) => server.close(() => r())) };
}

const WEBHOOK_SECRET = 'whsec-0123456789abcdef0123456789abcdef';
const SLACK_PATH = '/services/T0000000/B0000000/slackTokenPart0123456789';

/**
 * Issue 18, notifications: a failed rotation and a held one reach a Slack-shaped receiver and a
 * signed webhook; a receiver answering 500 three times then 200 gets exactly one delivery; no
 * payload, log line or Redis value carries a secret.
 */
describe('notifications', () => {
  let stack: Stack;
  let rt: Runtime;
  let slack: Awaited<ReturnType<typeof receiver>>;
  let hook: Awaited<ReturnType<typeof receiver>>;
  const hold = new PromoteHold();
  /** Webhook requests per event id answered 500 so far: the first event's first three attempts fail. */
  let failuresLeft = 3;

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 3, drainSeconds: 0 });
    await stack.seedAll();
    slack = await receiver(() => 200);
    hook = await receiver(() => (failuresLeft-- > 0 ? 500 : 200));
    rt = await startEngine(
      stack,
      {
        NOTIFY_SLACK_WEBHOOK_URL: `${slack.url}${SLACK_PATH}`,
        NOTIFY_WEBHOOK_URL: `${hook.url}/rotator`,
        NOTIFY_WEBHOOK_SECRET: WEBHOOK_SECRET,
        NOTIFY_BACKOFF_SECONDS: '0.05',
        NOTIFY_MAX_ATTEMPTS: '6',
        PLANNER_ENABLED: 'false',
      },
      { gates: [hold] },
    );
  }, 120_000);

  afterAll(async () => {
    await rt?.close();
    await slack?.close();
    await hook?.close();
    await stack?.close();
  });

  const delivered = (r: { got: Received[] }, type: string) => r.got.filter((g) => g.status === 200 && JSON.parse(g.body || '{}').type === type);
  const slackFor = (rotationId: string) => slack.got.filter((g) => g.body.includes(rotationId));

  it('a failed rotation reaches Slack and the webhook (after three 500s, exactly once), signed', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    stack.emu.setAccountStatus(sid, 'closed');
    const rec = await waitFinished(rt, (await startRotation(rt, sid)).id);
    expect(rec.status).toBe('failed');

    const [ok] = await waitFor('the webhook to accept the failure notification', async () => delivered(hook, 'rotation.failed').length > 0 && delivered(hook, 'rotation.failed'));
    await waitFor('Slack to get the failure notification', async () => slackFor(rec.id).length > 0);
    // Three 500s, then the 200: four requests for the one event, each signed afresh.
    const attempts = hook.got.filter((g) => g.body.includes(rec.id));
    expect(attempts.map((a) => a.status)).toEqual([500, 500, 500, 200]);
    const body = JSON.parse(ok!.body);
    expect(body).toMatchObject({ version: 1, type: 'rotation.failed', rotationId: rec.id, accountSid: sid, credential: 'default' });
    expect(ok!.path).toBe('/rotator');
    expect(ok!.headers['idempotency-key']).toBe(body.id);
    expect(ok!.headers['content-type']).toBe('application/json');
    for (const a of attempts) expect(verifyWebhookSignature(WEBHOOK_SECRET, a.body, a.headers['rotator-signature'] as string, Math.floor(Date.now() / 1000))).toBe(true);
    // The receiver's side rejects a wrong secret, a changed body and a replay outside its tolerance.
    const sig = ok!.headers['rotator-signature'] as string;
    expect(verifyWebhookSignature('another-secret-0123456789', ok!.body, sig, Math.floor(Date.now() / 1000))).toBe(false);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, ok!.body.replace('failed', 'succeeded'), sig, Math.floor(Date.now() / 1000))).toBe(false);
    expect(verifyWebhookSignature(WEBHOOK_SECRET, ok!.body, sig, Math.floor(Date.now() / 1000) + 3_600)).toBe(false);

    // Slack's shape: text plus blocks, a mrkdwn section and a context line.
    const s = slackFor(rec.id)[0]!;
    expect(s.path).toBe(SLACK_PATH);
    const payload = JSON.parse(s.body);
    expect(payload.text).toMatch(/Rotation failed/);
    expect(payload.blocks[0]).toMatchObject({ type: 'section', text: { type: 'mrkdwn' } });
    expect(payload.blocks[1]).toMatchObject({ type: 'context', elements: [{ type: 'mrkdwn' }] });
    stack.emu.setAccountStatus(sid, 'active');
  }, 120_000);

  it('a rotation held at promote by a gate notifies once, however often its wait is re-armed', async () => {
    const sid = stack.emu.subaccounts[1]!.sid;
    hold.hold(sid);
    const rec = await startRotation(rt, sid);
    await waitWaiting(rt, rec.id);
    await waitFor('Slack to get the hold notification', async () => slackFor(rec.id).some((g) => g.body.includes('Rotation held')));
    await waitFor('the webhook to get the hold notification', async () => delivered(hook, 'rotation.held').some((g) => g.body.includes(rec.id)));
    hold.release(sid);
    expect((await waitFinished(rt, rec.id)).status).toBe('succeeded');
    expect(delivered(hook, 'rotation.held').filter((g) => g.body.includes(rec.id))).toHaveLength(1);
  }, 120_000);

  it('a relay re-reading the stream (a crash before its cursor moved) delivers nothing twice', async () => {
    const before = { hook: hook.got.filter((g) => g.status === 200).length, slack: slack.got.length };
    await rt.redis.set(`${stack.cfg.redisPrefix}:notify:cursor`, '0-0');
    const last = (await rt.redis.xrevrange(`${stack.cfg.redisPrefix}:events`, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>;
    await waitFor('the relay to read the whole stream again', async () => (await rt.redis.get(`${stack.cfg.redisPrefix}:notify:cursor`)) === last[0]![0]);
    const q = createNotifyQueue(rt.redis.duplicate(), stack.cfg.redisPrefix);
    try {
      await waitFor('the notify queue to be idle', async () => {
        const c = await q.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
        return Object.values(c).every((n) => n === 0);
      });
    } finally {
      await q.close();
    }
    expect({ hook: hook.got.filter((g) => g.status === 200).length, slack: slack.got.length }).toEqual(before);
  }, 60_000);

  it('counts sent, retried and failed deliveries per sink in /metrics', async () => {
    const text = await rt.metrics.registry.metrics();
    expect(text).toMatch(/^rotator_notifications_total\{sink="webhook",outcome="retried"\} 3$/m);
    expect(text).toMatch(/^rotator_notifications_total\{sink="webhook",outcome="sent"\} 2$/m);
    expect(text).toMatch(/^rotator_notifications_total\{sink="slack",outcome="sent"\} 2$/m);
  });

  it('no secret in any payload, log line or Redis value', async () => {
    const secrets = [...stack.emu.issuedSecrets(), stack.emu.parent.authToken, WEBHOOK_SECRET, SLACK_PATH.split('/').at(-1)!];
    const payloads = [...slack.got, ...hook.got].map((g) => `${JSON.stringify(g.headers)}\n${g.body}`);
    expect(findSecrets(secrets, payloads)).toEqual([]);
    expect(findSecrets(secrets, [stack.logs.text()])).toEqual([]);
    expect(findSecrets(secrets, await dumpRedis(stack.redis.url))).toEqual([]);
  }, 60_000);
});
