// Small shared pieces: the confirmation dialog, the role note, and how times read.
import { html, useEffect, useRef, useState } from './preact-htm.js';

export function ageText(ms) {
  const m = Math.max(0, Math.round(ms / 60_000));
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return ageText(ms);
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

/** Why a control is disabled for this session: said in words, next to it. */
export function RoleNote({ need, session, id }) {
  return html`<span class="role-note" id=${id}>Needs the ${need} role; you are signed in as ${session.role}.</span>`;
}

/**
 * A modal <dialog> that says exactly what will happen; the action runs only on its button. Focus
 * moves into it, Escape closes it, and focus returns where it was.
 */
export function ConfirmDialog({ spec, onClose }) {
  const ref = useRef(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [extra, setExtra] = useState('');
  const [checked, setChecked] = useState(false);
  useEffect(() => {
    const opener = document.activeElement;
    const d = ref.current;
    d.showModal();
    const onCancel = () => onClose();
    d.addEventListener('close', onCancel);
    return () => {
      d.removeEventListener('close', onCancel);
      if (d.open) d.close();
      if (opener && opener.focus && document.contains(opener)) opener.focus();
    };
  }, []);
  const go = async () => {
    if (spec.input && !extra.trim()) {
      setError(`${spec.input} is required.`);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await spec.run(extra.trim(), checked);
      onClose();
    } catch (err) {
      setError(err.message);
      setBusy(false);
    }
  };
  return html`<dialog ref=${ref} aria-labelledby="confirm-title" aria-describedby="confirm-body" class="confirm">
    <h2 id="confirm-title">${spec.title}</h2>
    <div id="confirm-body">${spec.body.map((p) => html`<p>${p}</p>`)}</div>
    ${spec.input && html`<label for="confirm-input">${spec.input}</label><input id="confirm-input" value=${extra} onInput=${(e) => setExtra(e.currentTarget.value)} />`}
    ${spec.check && html`<div class="check"><input id="confirm-check" type="checkbox" checked=${checked} onChange=${(e) => setChecked(e.currentTarget.checked)} /><label for="confirm-check">${spec.check}</label></div>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <div class="actions">
      <button type="button" class="primary" disabled=${busy} onClick=${go}>${busy ? 'Working…' : spec.action}</button>
      <button type="button" disabled=${busy} onClick=${() => onClose()} autofocus>Keep things as they are</button>
    </div>
  </dialog>`;
}
