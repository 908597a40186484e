// Live updates from GET /v1/events. The browser's EventSource reconnects by itself after a drop
// and sends Last-Event-ID, and the API replays what was missed from the stream: no gaps. Each
// event is handed on once (ids only grow), so a replay that overlaps is not shown twice.

function compareIds(a, b) {
  const [am, as] = a.split('-').map(BigInt);
  const [bm, bs] = b.split('-').map(BigInt);
  if (am !== bm) return am < bm ? -1 : 1;
  return as === bs ? 0 : as < bs ? -1 : 1;
}

export function connectLive({ onEvent, onStatus, onResync }) {
  let lastId = null;
  const source = new EventSource('/v1/events');
  const handle = (kind) => (message) => {
    if (message.lastEventId) {
      if (lastId !== null && compareIds(message.lastEventId, lastId) <= 0) return;
      lastId = message.lastEventId;
    }
    let data = null;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    onEvent({ id: message.lastEventId, kind, data });
  };
  source.addEventListener('rotation', handle('rotation'));
  source.addEventListener('batch', handle('batch'));
  source.addEventListener('resync', () => onResync());
  source.addEventListener('expired', () => {
    source.close();
    onStatus('ended');
  });
  source.addEventListener('open', () => onStatus('online'));
  source.addEventListener('error', () => onStatus(source.readyState === EventSource.CLOSED ? 'ended' : 'offline'));
  return () => source.close();
}
