// Schedule, batches and compliance views.
import { html, useCallback, useEffect, useState } from './preact-htm.js';
import { RoleNote, when } from './ui.js';

const RANK = { viewer: 0, operator: 1, admin: 2 };
const can = (session, role) => RANK[session.role] >= RANK[role];

function useLoad(fn, deps) {
  const [state, setState] = useState({ data: null, error: null });
  const reload = useCallback(() => fn().then((data) => setState({ data, error: null }), (err) => setState({ data: null, error: err.message })), deps);
  useEffect(() => {
    reload();
  }, deps);
  return [state, reload];
}

export function ScheduleView({ session, confirm, api }) {
  const [{ data: s, error }, reload] = useLoad(() => api('GET', '/v1/schedule?days=7'), []);
  if (error) return html`<section><h2>Schedule</h2><p class="error" role="alert">${error}</p></section>`;
  if (!s) return html`<section><h2>Schedule</h2><p role="status">Loading…</p></section>`;
  const admin = can(session, 'admin');
  const max = Math.max(1, ...s.forecast.items.map((d) => d.count));
  const pause = () =>
    confirm({
      title: 'Pause the whole fleet?',
      body: ['The planner starts no scheduled rotation anywhere until an admin resumes it. Rotations in flight finish; manual rotations and batches still run.'],
      input: 'Reason (recorded in the audit trail)',
      action: 'Pause the fleet',
      run: async (reason) => {
        await api('POST', '/v1/schedule/pause', { reason });
        reload();
      },
    });
  const resume = () =>
    confirm({
      title: 'Resume the fleet?',
      body: ['The planner starts scheduled rotations again, beginning with those that came due while paused.'],
      input: 'Reason (recorded in the audit trail)',
      action: 'Resume the fleet',
      run: async (reason) => {
        await api('POST', '/v1/schedule/resume', { reason });
        reload();
      },
    });
  return html`<section aria-labelledby="sched-h">
    <h2 id="sched-h">Schedule</h2>
    <p role="status">${s.paused ? html`<span class="badge bad">⏸ Fleet paused</span> by ${s.paused.by} at ${when(s.paused.at)}: ${s.paused.reason}` : html`<span class="badge good">▶ Planner running</span>`}${s.stalled ? html` <span class="badge warn">⚠ No planner tick lately: is a worker running?</span>` : ''}</p>
    <div class="actions">
      ${s.paused
        ? html`<button type="button" disabled=${!admin} onClick=${resume}>Resume the fleet…</button>`
        : html`<button type="button" disabled=${!admin} onClick=${pause}>Pause the fleet…</button>`}
      ${!admin && html`<${RoleNote} need="admin" session=${session} />`}
    </div>
    <dl class="facts">
      <dt>Scheduled</dt><dd>${s.scheduled}</dd><dt>Due now</dt><dd>${s.dueNow}</dd><dt>Overdue</dt><dd>${s.overdue}</dd><dt>In flight</dt><dd>${s.inFlight}</dd><dt>Failing</dt><dd>${s.failing.count}</dd>
    </dl>
    <h3>Forecast: rotations per day (UTC), next 7 days</h3>
    <table class="forecast">
      <thead><tr><th scope="col">Day</th><th scope="col">Rotations</th><th scope="col">By policy</th></tr></thead>
      <tbody>${s.forecast.items.map(
        (d) => html`<tr><th scope="row">${d.date}</th><td><span class="bar" style=${{ width: `${(d.count / max) * 12}em` }} aria-hidden="true"></span> ${d.count}</td><td>${Object.entries(d.byPolicy).map(([p, n]) => `${p}: ${n}`).join(', ') || '—'}</td></tr>`,
      )}</tbody>
    </table>
  </section>`;
}

function BatchCard({ b, session, confirm, api, onChange }) {
  const operator = can(session, 'operator');
  const act = (action, title, body) =>
    confirm({
      title,
      body,
      action: title.replace(/\?$/, ''),
      run: async () => {
        await api('POST', `/v1/batches/${b.id}/${action}`);
        onChange();
      },
    });
  const open = !['cancelled', 'completed', 'halted'].includes(b.status);
  return html`<article class="batch" aria-labelledby=${`b-${b.id}`} data-batch=${b.id}>
    <h3 id=${`b-${b.id}`}>Batch ${b.id.slice(0, 8)} <span class="badge neutral" data-batch-status=${b.status}>${b.status}</span>${b.dryRun ? ' (dry run)' : ''}</h3>
    <p>${b.reason} — ${b.total} credentials, by ${b.requestedBy || 'the planner'}, ${when(b.createdAt)}</p>
    <p>Done: ${b.counts.succeeded} succeeded, ${b.counts.failed} failed, ${b.counts.cancelled} cancelled, ${b.counts.skipped} skipped, ${b.counts.inFlight} in flight.</p>
    ${b.halt && html`<p class="error-box" role="alert">Halted at wave ${b.halt.wave}: ${b.halt.reason} (${b.halt.failed} of ${b.halt.counted} failed)</p>`}
    <table>
      <caption class="visually-hidden">Progress by wave</caption>
      <thead><tr><th scope="col">Wave</th><th scope="col">Size</th><th scope="col">Succeeded</th><th scope="col">Failed</th><th scope="col">In flight</th><th scope="col">Progress</th></tr></thead>
      <tbody>${b.progress.map((w) => {
        const done = w.succeeded + w.failed + w.cancelled + w.skipped;
        return html`<tr><th scope="row">${w.wave}${w.wave === 1 ? ' (canary)' : ''}</th><td>${w.size}</td><td>${w.succeeded}</td><td>${w.failed}</td><td>${w.inFlight}</td><td><progress max=${w.size} value=${done} aria-label=${`wave ${w.wave}: ${done} of ${w.size} finished`}></progress></td></tr>`;
      })}</tbody>
    </table>
    <div class="actions">
      ${b.status === 'paused'
        ? html`<button type="button" disabled=${!operator} onClick=${() => act('resume', 'Resume this batch?', ['It starts the remaining rotations where it left off, wave by wave.'])}>Resume batch…</button>`
        : html`<button type="button" disabled=${!operator || !open} onClick=${() => act('pause', 'Pause this batch?', ['No new rotation of this batch starts; those in flight run on and are counted.'])}>Pause batch…</button>`}
      <button type="button" disabled=${!operator || !open} onClick=${() => act('cancel', 'Cancel this batch?', [`Nothing more starts; the ${b.counts.inFlight} rotations in flight are cancelled where still possible (their old keys stay), else they finish.`])}>Cancel batch…</button>
      ${!operator && html`<${RoleNote} need="operator" session=${session} />`}
    </div>
  </article>`;
}

export function BatchesView({ session, confirm, api, events }) {
  const [{ data, error }, reload] = useLoad(async () => {
    const list = await api('GET', '/v1/batches?limit=10');
    return Promise.all(list.items.map((b) => api('GET', `/v1/batches/${b.id}`)));
  }, []);
  const latest = events.find((e) => e.kind === 'batch');
  useEffect(() => {
    if (latest) reload();
  }, [latest && latest.id]);
  const operator = can(session, 'operator');
  const start = (e) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const labels = String(f.get('labels') || '').split(',').map((s) => s.trim()).filter(Boolean);
    const body = {
      selector: labels.length ? { labels } : 'all',
      reason: String(f.get('reason') || '').trim(),
      dryRun: f.get('dryRun') === 'on',
      waves: { canary: Number(f.get('canary')), step: Number(f.get('step')), bakeSeconds: Number(f.get('bake')) },
      maxFailureRate: Number(f.get('maxFailure')) / 100,
    };
    confirm({
      title: `Start a batch over ${labels.length ? `the credentials labelled ${labels.join(' and ')}` : 'every credential'}?`,
      body: [
        `It rotates every active, unpaused credential ${labels.length ? `whose subaccount has the label${labels.length > 1 ? 's' : ''} ${labels.join(', ')}` : 'of the fleet'}${body.dryRun ? ' as a dry run (no key changes)' : ''}: ${body.waves.canary} first as a canary, then ${body.waves.step}% of the selection per wave, ${body.waves.bakeSeconds} s apart.`,
        `It halts when more than ${Math.round(body.maxFailureRate * 100)}% of a wave fails. The batch page shows the count it selected once planned.`,
      ],
      action: 'Start the batch',
      run: async () => {
        await api('POST', '/v1/batches', body);
        reload();
      },
    });
  };
  return html`<section aria-labelledby="batches-h">
    <h2 id="batches-h">Batches</h2>
    <details class="new-batch">
      <summary>Start a batch</summary>
      <form onSubmit=${start}>
        <div><label for="b-labels">Labels (comma-separated; empty: all)</label><input id="b-labels" name="labels" /></div>
        <div><label for="b-reason">Reason</label><input id="b-reason" name="reason" required /></div>
        <div><label for="b-canary">Canary size</label><input id="b-canary" name="canary" type="number" min="1" value="1" /></div>
        <div><label for="b-step">Wave size (% of the selection)</label><input id="b-step" name="step" type="number" min="1" max="100" value="50" /></div>
        <div><label for="b-bake">Wait between waves (seconds)</label><input id="b-bake" name="bake" type="number" min="0" value="0" /></div>
        <div><label for="b-fail">Halt above this failure rate (%)</label><input id="b-fail" name="maxFailure" type="number" min="0" max="100" value="20" /></div>
        <div class="check"><input id="b-dry" name="dryRun" type="checkbox" /><label for="b-dry">Dry run</label></div>
        <button type="submit" disabled=${!operator}>Start batch…</button>
        ${!operator && html`<${RoleNote} need="operator" session=${session} />`}
      </form>
    </details>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${!data && !error ? html`<p role="status">Loading…</p>` : data && data.length === 0 ? html`<p>No batches yet.</p>` : ''}
    ${data && data.map((b) => html`<${BatchCard} key=${b.id} b=${b} session=${session} confirm=${confirm} api=${api} onChange=${reload} />`)}
  </section>`;
}

const BUCKETS = [
  ['under half the allowed age', (r) => r < 0.5],
  ['half to 80%', (r) => r >= 0.5 && r < 0.8],
  ['80% to the limit', (r) => r >= 0.8 && r <= 1],
  ['past the limit', (r) => r > 1],
];

export function ComplianceView({ session, api }) {
  const [{ data, error }] = useLoad(async () => {
    const [creds, subs] = await Promise.all([api('GET', '/v1/compliance?limit=500'), api('GET', '/v1/compliance?section=subaccounts&sprawl=true&limit=100')]);
    return { creds, subs };
  }, []);
  const [csvError, setCsvError] = useState(null);
  if (error) return html`<section><h2>Compliance</h2><p class="error" role="alert">${error}</p></section>`;
  if (!data) return html`<section><h2>Compliance</h2><p role="status">Loading…</p></section>`;
  const s = data.creds.summary;
  const assessed = data.creds.items.filter((c) => c.keyAgeDays !== null && c.allowedKeyAgeDays > 0);
  const counts = BUCKETS.map(([label, test]) => [label, assessed.filter((c) => test(c.keyAgeDays / c.allowedKeyAgeDays)).length]);
  const max = Math.max(1, ...counts.map(([, n]) => n));
  const download = async () => {
    setCsvError(null);
    try {
      const text = await api('GET', '/v1/compliance', undefined, 'text/csv');
      const a = document.createElement('a');
      a.href = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
      a.download = `rotator-compliance-${new Date().toISOString().slice(0, 10)}.csv`;
      document.body.append(a);
      a.click();
      a.remove();
    } catch (err) {
      setCsvError(err.message);
    }
  };
  return html`<section aria-labelledby="comp-h">
    <h2 id="comp-h">Compliance</h2>
    ${s
      ? html`<dl class="facts">
          <dt>Within policy</dt><dd>${s.withinPolicyPercent === null ? '—' : `${s.withinPolicyPercent}%`} (${s.withinPolicy} of ${s.assessed})</dd>
          <dt>Overdue</dt><dd>${s.overdue}</dd>
          <dt>Oldest key</dt><dd>${s.oldestKeyAgeDays === null ? '—' : `${s.oldestKeyAgeDays} d`}${s.oldestKey ? html` <span class="mono">${s.oldestKey.keySid}</span> (${s.oldestKey.accountSid}/${s.oldestKey.credential})` : ''}</dd>
          <dt>Sprawl keys</dt><dd>${s.sprawlKeys}</dd><dt>Leftover keys</dt><dd>${s.leftoverKeys}</dd>
        </dl><p class="muted">Totals as of the last scan, ${when(data.creds.summaryAsOf)}.</p>`
      : html`<p>No compliance scan has finished yet.</p>`}
    <button type="button" onClick=${download}>Download CSV</button>
    ${csvError && html`<p class="error" role="alert">${csvError}</p>`}
    <h3 id="age-h">Key age against policy (${assessed.length} credentials${data.creds.nextCursor ? ', first 500' : ''})</h3>
    <table class="chart" aria-labelledby="age-h">
      <thead><tr><th scope="col">Key age</th><th scope="col">Credentials</th></tr></thead>
      <tbody>${counts.map(([label, n], i) => html`<tr><th scope="row">${label}</th><td><span class=${`bar b${i}`} style=${{ width: `${(n / max) * 16}em` }} aria-hidden="true"></span> ${n}</td></tr>`)}</tbody>
    </table>
    <h3>Key sprawl</h3>
    ${data.subs.items.length === 0
      ? html`<p>No subaccount has keys that Rotator did not create${can(session, 'admin') ? '' : ''}.</p>`
      : html`<table><thead><tr><th scope="col">Subaccount</th><th scope="col">Key</th><th scope="col">Name</th><th scope="col">Age</th></tr></thead>
        <tbody>${data.subs.items.flatMap((sub) => sub.sprawl.map((k) => html`<tr><td class="mono">${sub.accountSid}</td><td class="mono">${k.sid}</td><td>${k.friendlyName}</td><td>${k.ageDays} d</td></tr>`))}</tbody></table>`}
  </section>`;
}
