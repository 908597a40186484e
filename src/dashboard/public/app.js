// The operator dashboard: plain ES modules, Preact + htm served by Rotator (no build step, nothing
// from another origin, no inline script). Views follow the URL (?view=…), so a reload keeps them.
import { html, render, useCallback, useEffect, useRef, useState } from './preact-htm.js';
import { api, query, setCsrfToken } from './api.js';
import { connectLive } from './live.js';
import { BatchesView, ComplianceView, ScheduleView } from './views.js';
import { ageText, ConfirmDialog, duration, RoleNote, when } from './ui.js';

const PAGE = 100;
const STEPS = ['create-secondary', 'operationalize', 'promote', 'delete-old'];
const RANK = { viewer: 0, operator: 1, admin: 2 };

export function can(session, role) {
  return RANK[session.role] >= RANK[role];
}

function readUrl() {
  const p = new URLSearchParams(location.search);
  return Object.fromEntries(p.entries());
}

function navigate(params, replace = false) {
  const url = query(params) || location.pathname;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  window.dispatchEvent(new Event('rotator:navigate'));
}

function Link({ to, children, current }) {
  const href = query(to) || '/';
  const onClick = (e) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    navigate(to);
  };
  return html`<a href=${href} onClick=${onClick} aria-current=${current ? 'page' : undefined}>${children}</a>`;
}

// ---- Sign-in ----

function SignIn({ onSignedIn, sso }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const input = useRef(null);
  useEffect(() => input.current && input.current.focus(), []);
  const submit = async (e) => {
    e.preventDefault();
    const token = input.current.value.trim();
    if (!token) {
      setError('Paste an API token first.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const s = await api('POST', '/v1/session', { token });
      input.current.value = '';
      onSignedIn({ signedIn: true, ...s });
    } catch (err) {
      setError(err.status === 401 ? 'That token is unknown or revoked. Check it, or mint one with npm run mint-token.' : err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<main id="main" class="signin">
    <h1>Rotator</h1>
    <p>Sign in with an API token. It is exchanged for a session cookie and not kept by this page.</p>
    <form method="post" action="/v1/session" onSubmit=${submit}>
      <label for="token">API token</label>
      <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" ref=${input} aria-describedby=${error ? 'signin-error' : undefined} />
      <button type="submit" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
      ${error && html`<p id="signin-error" class="error" role="alert">${error}</p>`}
    </form>
    ${sso && html`<p class="sso">Or <a class="button" href="/v1/session/oidc">Sign in with SSO</a> through your identity provider.</p>`}
  </main>`;
}

// ---- Fleet ----

const STATUS_FILTERS = {
  '': 'Any',
  overdue: 'Overdue',
  failed: 'Last rotation failed',
  paused: 'Paused',
  active: 'Not paused',
  inflight: 'Rotation in flight',
};

/** Sorted by the API (GET /v1/credentials sort, order): the columns it can sort, and the parameter each sets. */
const SORTS = { account: 'Credential', deadline: 'Next rotation' };

function filterParams(url) {
  const f = { q: url.q, label: url.label, policy: url.policy };
  if (url.status === 'overdue') f.overdue = true;
  if (url.status === 'failed') f.failed = true;
  if (url.status === 'paused') f.paused = true;
  if (url.status === 'active') f.paused = false;
  if (url.status === 'inflight') f.inFlight = true;
  if (url.sort === 'deadline') f.sort = 'deadline';
  if (url.order === 'desc') f.order = 'desc';
  return f;
}

/** The filters a batch can select by (selector.filter): not pause (paused credentials are never rotated) nor in-flight ones (already rotating). */
function batchFilter(url) {
  if (url.status === 'paused' || url.status === 'inflight') return null;
  const f = filterParams(url);
  delete f.paused;
  delete f.sort;
  delete f.order;
  for (const k of Object.keys(f)) if (f[k] === undefined || f[k] === '') delete f[k];
  return f;
}

/** Follows the cursor until a screen's worth of matches (or 40 reads), keeping any overflow for the next screen. */
async function fillPage(filters, from) {
  const buffer = from.buffer.slice();
  let cursor = from.cursor;
  let done = from.done;
  let reads = 0;
  let scanned = 0;
  const filtered = Object.entries(filters).some(([k, v]) => k !== 'sort' && k !== 'order' && v !== undefined && v !== '');
  while (buffer.length < PAGE && !done && reads < 40) {
    const limit = filtered ? 500 : PAGE - buffer.length;
    const page = await api('GET', `/v1/credentials${query({ ...filters, limit, cursor })}`);
    buffer.push(...page.items);
    cursor = page.nextCursor;
    done = cursor === null;
    reads++;
    scanned += limit;
  }
  return { rows: buffer.slice(0, PAGE), next: { buffer: buffer.slice(PAGE), cursor, done }, scanned, more: !done || buffer.length > PAGE };
}

function Countdown({ c, now }) {
  if (c.notScheduled) return html`<span class="muted">Not scheduled: ${c.notScheduled}</span>`;
  if (c.overdue) return html`<span class="badge bad">⚠ Overdue</span> <span>deadline was ${ageText(now - Date.parse(c.deadline))} ago</span>`;
  if (!c.nextRotationAt) return html`<span class="muted">—</span>`;
  const left = Date.parse(c.nextRotationAt) - now;
  const toDeadline = c.deadline ? Date.parse(c.deadline) - now : Infinity;
  const soon = toDeadline < 86_400_000;
  return html`${soon ? html`<span class="badge warn">⏰ Due soon</span> ` : ''}<time datetime=${c.nextRotationAt}>${left <= 0 ? 'due now' : `in ${ageText(left)}`}</time>`;
}

function RotationState({ c, live }) {
  // A live event is newer than the page; without one, the API's in-flight rotation (read with the page).
  const l = live[c.id] || (c.inFlight ? { rotationId: c.inFlight.id, status: c.inFlight.status, step: c.inFlight.step } : undefined);
  if (l && !['succeeded', 'failed', 'cancelled', 'rolled_back'].includes(l.status)) {
    return html`<${Link} to=${{ view: 'rotation', id: l.rotationId }}><span class="badge info">↻ ${l.status}: ${l.step}</span><//>`;
  }
  const last = l ? { outcome: l.status, id: l.rotationId } : c.lastRotation;
  if (!last) return html`<span class="muted">never rotated</span>`;
  const cls = last.outcome === 'succeeded' ? 'good' : last.outcome === 'failed' ? 'bad' : 'neutral';
  const mark = last.outcome === 'succeeded' ? '✓' : last.outcome === 'failed' ? '✗' : '•';
  return html`<${Link} to=${{ view: 'rotation', id: last.id }}><span class=${`badge ${cls}`}>${mark} ${last.outcome}</span><//>`;
}

/**
 * One subaccount's Auth Token rotation switch (issue 16): off unless an admin enables it, because an
 * Auth Token change can break every integration of the account at once. Shown when the fleet is
 * narrowed to one subaccount; enabling asks for the account SID typed again.
 */
function AuthTokenSwitch({ sid, session, confirm }) {
  const [account, setAccount] = useState(null);
  const [error, setError] = useState(null);
  const reload = () => api('GET', `/v1/accounts/${sid}`).then(setAccount, (err) => setError(err.message));
  useEffect(() => {
    setAccount(null);
    setError(null);
    reload();
  }, [sid]);
  if (error) return html`<p class="muted">Subaccount ${sid}: ${error}</p>`;
  if (!account) return null;
  const admin = can(session, 'admin');
  const on = account.authTokenRotation;
  const flip = () =>
    confirm({
      title: on ? `Turn off Auth Token rotation for ${sid}?` : `Allow Auth Token rotation for ${sid}?`,
      body: on
        ? ['Rotator will refuse to rotate this account\'s Auth Token, by hand, by batch or by schedule. A rotation already in flight finishes.']
        : [
            'Rotating an Auth Token changes what signs every webhook of the account and what every integration using the token holds: after promotion the old token stops working at once.',
            'This only allows it: each Auth Token rotation still needs the admin role and the account SID repeated, and a schedule starts one only where its policy allows Auth Tokens.',
          ],
      ...(on ? {} : { input: `Type ${sid} to confirm` }),
      action: on ? 'Turn off Auth Token rotation' : 'Allow Auth Token rotation',
      run: async (typed) => {
        if (!on && typed !== sid) throw new Error(`Type the account SID ${sid} exactly to confirm.`);
        setAccount(await api('PATCH', `/v1/accounts/${sid}`, { authTokenRotation: !on }));
      },
    });
  return html`<div class="account-switch" id="auth-token-switch">
    <p><strong>${account.friendlyName || sid}</strong>: Auth Token rotation is <strong data-auth-token-rotation=${on ? 'on' : 'off'}>${on ? '🔓 allowed' : '🔒 off'}</strong>.</p>
    <button type="button" disabled=${!admin} onClick=${flip} aria-describedby=${admin ? undefined : 'auth-token-role'}>${on ? 'Turn off Auth Token rotation…' : 'Allow Auth Token rotation…'}</button>
    ${!admin && html`<${RoleNote} id="auth-token-role" need="admin" session=${session} />`}
  </div>`;
}

function FleetView({ session, url, live, now, confirm, refreshKey }) {
  const filters = filterParams(url);
  const filterKey = JSON.stringify(filters);
  const [state, setState] = useState({ loading: true });
  const [stack, setStack] = useState([]);
  const [selected, setSelected] = useState(new Set());
  const [policies, setPolicies] = useState([]);
  const started = useRef(0);

  useEffect(() => {
    api('GET', '/v1/policies').then((p) => setPolicies((p.items || p).map((x) => x.name)), () => undefined);
  }, []);

  const load = useCallback(
    async (from, offset) => {
      started.current = performance.now();
      setState((s) => ({ ...s, loading: true, error: null }));
      try {
        const r = await fillPage(filters, from);
        setState({ loading: false, ...r, from, offset, error: null });
        setSelected(new Set());
        // The moment the table is on screen: the browser test reads it.
        requestAnimationFrame(() => {
          document.body.dataset.fleetRenderMs = String(Math.round(performance.now() - started.current));
          document.body.dataset.fleetLoaded = filterKey;
        });
      } catch (err) {
        setState((s) => ({ ...s, loading: false, error: err.message }));
      }
    },
    [filterKey],
  );

  useEffect(() => {
    setStack([]);
    load({ buffer: [], cursor: undefined, done: false }, 0);
  }, [filterKey, refreshKey]);

  const apply = (e) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    navigate({ view: 'fleet', q: form.get('q').trim(), status: form.get('status'), label: form.get('label').trim(), policy: form.get('policy'), sort: url.sort, order: url.order });
  };

  const rows = state.rows ? state.rows.slice() : [];
  const total = state.rows && !state.more ? state.offset + state.rows.length : -1;
  const operator = can(session, 'operator');

  // Sorting is the API's (the whole fleet, not this page), kept in the URL like the filters.
  const sortKey = url.sort === 'deadline' ? 'deadline' : 'account';
  const SortHeader = ({ k }) => {
    const dir = sortKey === k ? (url.order === 'desc' ? 'descending' : 'ascending') : 'none';
    const next = sortKey === k && url.order !== 'desc' ? 'desc' : undefined;
    return html`<th scope="col" aria-sort=${dir}><button type="button" class="link" onClick=${() => navigate({ ...url, view: 'fleet', sort: k === 'account' ? undefined : k, order: next })}>${SORTS[k]}<span aria-hidden="true">${dir === 'ascending' ? ' ▲' : dir === 'descending' ? ' ▼' : ''}</span></button></th>`;
  };

  // "Rotate these N" / "Retry the N failed": a batch whose selector is the filter, after the API said how many.
  const bulkFilter = batchFilter(url);
  const filteredView = bulkFilter && Object.keys(bulkFilter).length > 0;
  const rotateFiltered = async () => {
    const retry = url.status === 'failed';
    const body = { selector: { filter: bulkFilter }, reason: `${retry ? 'retry of the failed' : 'filtered'} credentials, from the dashboard by ${session.name}`, waves: { canary: 1, step: 50, bakeSeconds: 0 }, maxFailureRate: 0.2 };
    let preview;
    try {
      preview = await api('POST', '/v1/batches/preview', body);
    } catch (err) {
      confirm({ title: 'Nothing to rotate', body: [err.message], action: 'Close', run: async () => undefined });
      return;
    }
    const left = Object.entries(preview.leftOut).map(([why, n]) => `${n} ${why}`).join(', ');
    const n = preview.total;
    confirm({
      title: retry ? `Retry the ${n} failed?` : `Rotate these ${n}?`,
      body: [
        `A batch rotates exactly the ${n} credential${n === 1 ? '' : 's'} this filter selects now${left ? ` (left out, cannot be rotated: ${left})` : ''}: 1 first as a canary, then half of the rest at a time; it halts if more than 20% of a wave fails.`,
        'Each rotation creates a new key, waits the drain, then deletes the old key.',
      ],
      action: retry ? `Retry the ${n} failed` : `Rotate these ${n}`,
      run: async () => {
        await api('POST', '/v1/batches', body);
        navigate({ view: 'batches' });
      },
    });
  };

  const rotateNow = (c) =>
    confirm({
      title: `Rotate ${c.id} now?`,
      body: [
        `Rotator creates a new API key for ${c.name} in subaccount ${c.accountSid}, writes it to the secret store and waits the drain time before promoting it.`,
        `Then it deletes the current key ${c.currentKeySid || '(none yet: this is the first key)'} at Twilio. Consumers that re-read the store in time see no failure.`,
      ],
      action: 'Rotate now',
      ...(can(session, 'admin') ? { check: 'Urgent: the key leaked. Delete the old key without waiting the drain (consumers still holding it fail until they re-read the store).' } : {}),
      run: async (_text, urgent) => {
        const reason = `rotate now from the dashboard by ${session.name}`;
        const body = urgent ? { accountSid: c.accountSid, credential: c.name, reason: `${reason} (urgent)`, urgent: true, drainSeconds: 0 } : { accountSid: c.accountSid, credential: c.name, reason };
        const r = await api('POST', '/v1/rotations', body);
        navigate({ view: 'rotation', id: r.id });
      },
    });

  const rotateSelected = () => {
    const list = rows.filter((c) => selected.has(c.id));
    confirm({
      title: `Rotate these ${list.length} credentials?`,
      body: [
        `A batch rotates exactly these ${list.length} credentials in waves: 1 first as a canary, then half of the rest at a time; it halts if more than 20% of a wave fails.`,
        `Each rotation creates a new key, waits the drain, then deletes the old key. Paused credentials are skipped.`,
      ],
      action: `Start a batch of ${list.length}`,
      run: async () => {
        await api('POST', '/v1/batches', {
          selector: { credentials: list.map((c) => ({ accountSid: c.accountSid, name: c.name })) },
          reason: `selected in the dashboard by ${session.name}`,
          waves: { canary: 1, step: 50, bakeSeconds: 0 },
          maxFailureRate: 0.2,
        });
        navigate({ view: 'batches' });
      },
    });
  };

  const toggle = (id) => {
    const s = new Set(selected);
    if (s.has(id)) s.delete(id);
    else s.add(id);
    setSelected(s);
  };

  // The filter form is uncontrolled (defaults from the URL, re-made when it changes): the countdowns'
  // re-render every second must not undo what the operator is choosing before Apply.
  return html`<section aria-labelledby="fleet-h">
    <h2 id="fleet-h">Fleet</h2>
    <form class="filters" onSubmit=${apply} role="search" aria-label="Filter the fleet" key=${filterKey}>
      <div><label for="f-q">Search by SID, name or key SID</label><input id="f-q" name="q" type="search" defaultValue=${url.q || ''} /></div>
      <div><label for="f-status">Status</label><select id="f-status" name="status">
        ${Object.entries(STATUS_FILTERS).map(([v, l]) => html`<option value=${v} selected=${v === (url.status || '')}>${l}</option>`)}
      </select></div>
      <div><label for="f-label">Label</label><input id="f-label" name="label" defaultValue=${url.label || ''} /></div>
      <div><label for="f-policy">Policy</label><select id="f-policy" name="policy">
        <option value="">Any</option>
        ${policies.map((p) => html`<option value=${p} selected=${p === url.policy}>${p}</option>`)}
        ${url.policy && !policies.includes(url.policy) ? html`<option value=${url.policy} selected>${url.policy}</option>` : ''}
      </select></div>
      <button type="submit">Apply filters</button>
    </form>
    <div class="toolbar">
      <p role="status" aria-live="polite" id="fleet-status">
        ${state.loading ? 'Loading…' : state.error ? '' : `Showing ${rows.length ? `${state.offset + 1}–${state.offset + rows.length}` : 'no'} credential${rows.length === 1 ? '' : 's'}${total >= 0 ? ` of ${total}` : ''}${state.more ? '; more on the next page' : ''}.`}
      </p>
      <button type="button" disabled=${!operator || selected.size === 0} onClick=${rotateSelected} aria-describedby=${operator ? undefined : 'fleet-role'}>Rotate ${selected.size} selected…</button>
      ${filteredView && html`<button type="button" id="bulk-filter" disabled=${!operator} onClick=${rotateFiltered} aria-describedby=${operator ? undefined : 'fleet-role'}>${url.status === 'failed' ? 'Retry all failed in this filter…' : 'Rotate all in this filter…'}</button>`}
      ${!operator && html`<${RoleNote} id="fleet-role" need="operator" session=${session} />`}
    </div>
    ${/^AC[0-9a-f]{32}$/.test(url.q || '') && html`<${AuthTokenSwitch} sid=${url.q} session=${session} confirm=${confirm} />`}
    ${state.error && html`<p class="error" role="alert">Could not load the fleet: ${state.error}</p>`}
    <div class="table-wrap">
    <table aria-rowcount=${total >= 0 ? total + 1 : -1} aria-busy=${state.loading ? 'true' : 'false'} aria-describedby="fleet-status" id="fleet-table">
      <caption class="visually-hidden">Managed credentials, sorted by ${sortKey === 'deadline' ? 'policy deadline' : 'subaccount and name'}${url.order === 'desc' ? ', descending' : ''}${sortKey === 'deadline' ? ' (scheduled credentials only)' : ''}</caption>
      <thead><tr aria-rowindex="1">
        <th scope="col"><span class="visually-hidden">Select</span></th>
        <${SortHeader} k="account" />
        <th scope="col">Kind</th><th scope="col">Labels</th><th scope="col">Key SID</th>
        <th scope="col">Key age</th>
        <th scope="col">Policy</th>
        <${SortHeader} k="deadline" />
        <th scope="col">Rotation</th><th scope="col">Actions</th>
      </tr></thead>
      <tbody>
        ${rows.map(
          (c, i) => html`<tr key=${c.id} aria-rowindex=${state.offset + i + 2} data-id=${c.id}>
          <td><input type="checkbox" aria-label=${`Select ${c.id}`} checked=${selected.has(c.id)} onChange=${() => toggle(c.id)} disabled=${!operator} /></td>
          <td><span class="mono">${c.accountSid}</span><br />${c.name}${c.paused ? html` <span class="badge neutral">⏸ paused (${c.pausedBy})</span>` : ''}</td>
          <td>${c.kind}</td>
          <td>${c.labels.join(', ') || html`<span class="muted">none</span>`}</td>
          <td class="mono">${c.currentKeySid || html`<span class="muted">none yet</span>`}</td>
          <td title=${`counted from ${c.keyAgeFrom.replace('_', ' ')}`}>${c.keyAgeDays} d</td>
          <td>${c.policy.name}</td>
          <td><${Countdown} c=${c} now=${now} /></td>
          <td><${RotationState} c=${c} live=${live} /></td>
          <td><button type="button" disabled=${!operator} onClick=${() => rotateNow(c)} aria-label=${`Rotate ${c.id} now`} aria-describedby=${operator ? undefined : 'fleet-role'}>Rotate now</button></td>
        </tr>`,
        )}
      </tbody>
    </table>
    </div>
    <nav class="pager" aria-label="Fleet pages">
      <button type="button" disabled=${stack.length === 0 || state.loading} onClick=${() => {
        const prev = stack[stack.length - 1];
        setStack(stack.slice(0, -1));
        load(prev.from, prev.offset);
      }}>Previous page</button>
      <button type="button" disabled=${!state.more || state.loading} onClick=${() => {
        setStack([...stack, { from: state.from, offset: state.offset }]);
        load(state.next, state.offset + rows.length);
      }}>Next page</button>
    </nav>
  </section>`;
}

// ---- Rotation ----

function stepTimes(rec, step) {
  const entries = rec.history.filter((e) => e.step === step);
  if (!entries.length) return null;
  const first = entries[0];
  const last = entries[entries.length - 1];
  const start = first.startedAt || first.at;
  return { start, end: last.at, status: last.status, detail: last.detail, retries: entries.reduce((n, e) => n + (e.count || 0), 0) };
}

function RotationView({ session, id, now, confirm, events }) {
  const [rec, setRec] = useState(null);
  const [error, setError] = useState(null);
  const [audit, setAudit] = useState(null);
  const reload = useCallback(async () => {
    try {
      setRec(await api('GET', `/v1/rotations/${encodeURIComponent(id)}`));
      setError(null);
    } catch (err) {
      setError(err.message);
    }
    if (can(session, 'admin')) api('GET', `/v1/audit${query({ rotationId: id })}`).then((a) => setAudit(a.items), () => setAudit([]));
  }, [id]);
  useEffect(() => {
    reload();
  }, [id]);
  useEffect(() => {
    if (events.length && events[0].kind === 'rotation' && events[0].data.id === id) reload();
  }, [events[0] && events[0].id]);

  if (error) return html`<section><h2>Rotation</h2><p class="error" role="alert">${error}</p></section>`;
  if (!rec) return html`<section><h2>Rotation</h2><p role="status">Loading…</p></section>`;
  const terminal = ['succeeded', 'failed', 'cancelled', 'rolled_back'].includes(rec.status);
  const operator = can(session, 'operator');
  const currentIndex = terminal ? (rec.status === 'succeeded' ? STEPS.length : -1) : STEPS.indexOf(rec.step);
  const draining = !terminal && !rec.undo && rec.step === 'promote' && rec.promoteAfter && Date.parse(rec.promoteAfter) > now;
  const undoable = !terminal && rec.step !== 'delete-old' && !rec.undoRequested && !rec.undo;
  const act = (action, title, body) =>
    confirm({
      title,
      body,
      action: title.replace(/\?$/, ''),
      run: async () => {
        setRec(await api('POST', `/v1/rotations/${rec.id}/${action}`));
      },
    });
  const err = rec.error || rec.lastError;
  return html`<section aria-labelledby="rot-h">
    <h2 id="rot-h">Rotation of ${rec.accountSid}/${rec.credential}</h2>
    <p class="status-line" id="rotation-status" role="status" aria-live="polite">
      Status: <strong data-status=${rec.status}>${rec.status}</strong>${!terminal ? html`, step <strong>${rec.step}</strong>` : ''}${rec.undoRequested ? html`; ${rec.undoRequested.action} requested by ${rec.undoRequested.by || 'someone'}` : ''}
    </p>
    ${rec.undo && !terminal && html`<p class="drain" id="undoing">Undoing (${rec.undo.reason}): the old key ${rec.oldKeySid || ''} is current again${rec.undo.deleteAfter ? html`; the new key ${rec.newKeySid || ''} is deleted after <time datetime=${rec.undo.deleteAfter}>${when(rec.undo.deleteAfter)}</time> (${duration(Date.parse(rec.undo.deleteAfter) - now)} left), once consumers have re-read the store` : ''}.</p>`}
    ${draining && html`<p class="drain" id="drain">Drain: <strong>${duration(Date.parse(rec.promoteAfter) - now)}</strong> left; the new key is promoted at <time datetime=${rec.promoteAfter}>${when(rec.promoteAfter)}</time>. Consumers must re-read the store by then.</p>`}
    ${err && html`<div class="error-box" role="alert"><strong>${rec.error ? 'Failed' : 'Last error'}: </strong>${err.message}<br /><span class="muted">code ${err.code}</span></div>`}
    <ol class="timeline" aria-label="Steps">
      ${STEPS.map((s, i) => {
        const t = stepTimes(rec, s);
        // While a cancel or rollback is being carried out, the steps that ran are being undone.
        const undoing = rec.undo && !terminal;
        const state = undoing ? (t ? 'undoing' : 'pending') : i < currentIndex ? 'done' : i === currentIndex ? 'current' : rec.status === 'failed' && t ? 'failed' : t && terminal ? 'done' : 'pending';
        const label = { done: '✓ done', current: '▶ current', pending: '○ not started', failed: '✗ stopped', undoing: '↺ being undone' }[state];
        return html`<li class=${`step ${state}`} aria-current=${state === 'current' ? 'step' : undefined}>
          <span class="step-name">${s}</span> <span class="step-state">${label}</span>
          ${t && html`<span class="step-time">${when(t.start)}${t.end !== t.start ? ` → ${when(t.end)} (${duration(Date.parse(t.end) - Date.parse(t.start))})` : ''}${t.retries ? `, ${t.retries} retries` : ''}</span>`}
        </li>`;
      })}
    </ol>
    <dl class="facts">
      <dt>Old key</dt><dd class="mono">${rec.oldKeySid || '—'}</dd>
      <dt>New key</dt><dd class="mono">${rec.newKeySid || '—'}</dd>
      <dt>Started by</dt><dd>${rec.requestedBy || rec.trigger} (${rec.trigger}) at ${when(rec.createdAt)}</dd>
      <dt>Why</dt><dd>${rec.reason || '—'}</dd>
      <dt>Attempts</dt><dd>${rec.attempts}</dd>
      ${rec.urgent ? html`<dt>Urgent</dt><dd>yes: drain ${rec.drainSeconds} s</dd>` : ''}
    </dl>
    <div class="actions">
      <button type="button" disabled=${!operator || !undoable} onClick=${() => act('cancel', 'Cancel this rotation?', [`The rotation stops before deleting anything: the new key ${rec.newKeySid || '(if created)'} is deleted and the old key ${rec.oldKeySid || ''} stays current in the store.`])}>Cancel rotation…</button>
      <button type="button" disabled=${!operator || !undoable} onClick=${() => act('rollback', 'Roll this rotation back?', [`The store goes back to the old key ${rec.oldKeySid || ''}; the new key ${rec.newKeySid || ''} is deleted after the drain.`])}>Roll back…</button>
      <button type="button" disabled=${!operator || rec.status !== 'failed'} onClick=${() => act('retry', 'Retry this rotation?', ['A fully undone rotation starts again from create-secondary; an interrupted one resumes where it stopped.'])}>Retry…</button>
      ${!operator ? html`<${RoleNote} need="operator" session=${session} />` : terminal ? html`<span class="muted">Finished: no action applies.</span>` : ''}
    </div>
    <h3>History</h3>
    <ol class="history">${rec.history.map((e) => html`<li><time datetime=${e.at}>${when(e.at)}</time> ${e.step}: ${e.status}${e.detail ? ` — ${e.detail}` : ''}${e.count ? ` (×${e.count})` : ''}</li>`)}</ol>
    <h3>Audit entries</h3>
    ${can(session, 'admin')
      ? audit === null
        ? html`<p>Loading…</p>`
        : html`<ul class="history">${audit.length ? audit.map((a) => html`<li><time datetime=${a.at}>${when(a.at)}</time> ${a.actor} (${a.role || a.kind}): ${a.action} → ${a.status ?? ''} ${a.detail || ''}</li>`) : html`<li>none</li>`}</ul>`
      : html`<p class="muted">The audit trail needs the admin role; the history above is the rotation's own record.</p>`}
  </section>`;
}

// ---- Shell ----

function ActivityLog({ events }) {
  return html`<aside aria-labelledby="activity-h" class="activity" tabindex="0">
    <h2 id="activity-h">Live changes</h2>
    <div role="log" aria-live="off"><ol id="activity">
      ${events.slice(0, 40).map(
        (e) => html`<li key=${e.id} data-event-id=${e.id}>${e.kind === 'batch' ? `batch ${e.data.id.slice(0, 8)}: ${e.data.event || e.data.status}` : `${e.data.accountSid.slice(0, 10)}…/${e.data.credential}: ${e.data.step} ${e.data.status}`}</li>`,
      )}
    </ol></div>
  </aside>`;
}

function App() {
  const [session, setSession] = useState(null);
  const [url, setUrl] = useState(readUrl());
  const [live, setLive] = useState({});
  const [events, setEvents] = useState([]);
  const [connection, setConnection] = useState('connecting');
  const [now, setNow] = useState(Date.now());
  const [dialog, setDialog] = useState(null);
  const [refreshKey, setRefreshKey] = useState(0);
  const mainRef = useRef(null);

  useEffect(() => {
    api('GET', '/v1/session').then(
      (s) => {
        if (s.signedIn) setCsrfToken(s.csrfToken);
        setSession(s);
      },
      () => setSession({ signedIn: false }),
    );
    const onNav = () => setUrl(readUrl());
    window.addEventListener('popstate', onNav);
    window.addEventListener('rotator:navigate', onNav);
    // Countdowns move once a second while something drains, else every 15 s is plenty.
    const tick = setInterval(() => setNow(Date.now()), 1000);
    return () => {
      window.removeEventListener('popstate', onNav);
      window.removeEventListener('rotator:navigate', onNav);
      clearInterval(tick);
    };
  }, []);

  useEffect(() => {
    if (!session || !session.signedIn) return undefined;
    return connectLive({
      onEvent: (e) => {
        setEvents((list) => [e, ...list].slice(0, 200));
        if (e.kind === 'rotation') {
          const d = e.data;
          setLive((m) => ({ ...m, [`${d.accountSid}/${d.credential}`]: { rotationId: d.id, status: d.status, step: d.step } }));
        }
      },
      onStatus: setConnection,
      onResync: () => setRefreshKey((k) => k + 1),
    });
  }, [session && session.signedIn]);

  useEffect(() => {
    if (mainRef.current) mainRef.current.focus();
  }, [url.view, url.id]);

  if (session === null) return html`<p role="status">Loading…</p>`;
  if (!session.signedIn) return html`<${SignIn} sso=${session.sso} onSignedIn=${(s) => {
    setCsrfToken(s.csrfToken);
    setSession(s);
  }} />`;

  const signOut = async () => {
    try {
      await api('DELETE', '/v1/session');
    } finally {
      setCsrfToken(null);
      setSession({ signedIn: false });
      setEvents([]);
      setLive({});
      navigate({}, true);
    }
  };
  const confirm = (spec) => setDialog(spec);
  const view = url.view || 'fleet';
  const nav = [
    ['fleet', 'Fleet'],
    ['schedule', 'Schedule'],
    ['batches', 'Batches'],
    ['compliance', 'Compliance'],
  ];
  let body;
  if (view === 'rotation') body = html`<${RotationView} session=${session} id=${url.id} now=${now} confirm=${confirm} events=${events} />`;
  else if (view === 'schedule') body = html`<${ScheduleView} session=${session} confirm=${confirm} api=${api} />`;
  else if (view === 'batches') body = html`<${BatchesView} session=${session} confirm=${confirm} api=${api} events=${events} navigate=${navigate} />`;
  else if (view === 'compliance') body = html`<${ComplianceView} session=${session} api=${api} />`;
  else body = html`<${FleetView} session=${session} url=${url} live=${live} now=${now} confirm=${confirm} refreshKey=${refreshKey} />`;

  return html`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header>
      <span class="brand">Rotator</span>
      <nav aria-label="Views"><ul>${nav.map(([v, l]) => html`<li><${Link} to=${{ view: v }} current=${view === v}>${l}<//></li>`)}</ul></nav>
      <span class="who">Signed in as <strong>${session.name}</strong> (${session.role})</span>
      <button type="button" onClick=${signOut}>Sign out</button>
    </header>
    ${connection !== 'online' &&
    html`<div class=${`banner ${connection}`} role="status" id="connection">${connection === 'connecting'
      ? 'Connecting to live updates…'
      : connection === 'ended'
        ? 'Live updates stopped: the session ended. Sign in again.'
        : '⚠ Offline: live updates are paused; reconnecting. Changes made meanwhile will appear once connected.'}</div>`}
    <div class="layout">
      <main id="main" tabindex="-1" ref=${mainRef}>${body}</main>
      <${ActivityLog} events=${events} />
    </div>
    ${dialog && html`<${ConfirmDialog} spec=${dialog} onClose=${() => setDialog(null)} />`}
  </div>`;
}

render(html`<${App} />`, document.getElementById('app'));
